"""`modelkube gateway`: one OpenAI endpoint in front of every ModelService."""
