"""Serving benchmark: modelkube serve vs mlx_lm.server vs in-process batch_generate.

All three stay up side by side for a model and are measured in interleaved rounds.
Run with `python -m bench.serving` (`--rounds N`, or `--quick` for a smoke test).
"""
