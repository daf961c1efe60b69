"""Hosted providers behind the runtime's OpenAI API (proxy mode): who they are, how they differ."""
