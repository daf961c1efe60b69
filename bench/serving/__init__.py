"""Serving benchmark: modelkube serve vs mlx_lm.server vs in-process batch_generate.

Run with `python -m bench.serving` (or `--quick` for a smoke test).
"""
