"""Proxies and clients against one fast local OpenAI-compatible upstream (issue 7)."""
