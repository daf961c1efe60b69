"""Loading a model directory into MLX, on the thread that will own it."""

import json
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx_lm import load


def load_model(path: Path) -> tuple[Any, Any]:
    model, tokenizer = load(str(path))
    if mx.default_device() == mx.cpu:
        # bf16/fp16/quantized matmuls have no BLAS path on the CPU backend.
        model.set_dtype(mx.float32)
    return model, tokenizer


def _config(path: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((path / "config.json").read_text())
    return config.get("text_config", config) if "vocab_size" not in config else config


def vocab_size(path: Path) -> int:
    """Rows of the embedding: token ids at or above this read past the weights."""
    size: int = _config(path)["vocab_size"]
    return size


def context_length(path: Path, default: int = 4096) -> int:
    config = _config(path)
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        if isinstance(config.get(key), int):
            value: int = config[key]
            return value
    return default
