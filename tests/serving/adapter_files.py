"""Adapters for tests, written by mlx-lm's own code in mlx-lm's format (what `mlx_lm.lora`
and our trainer write), with seeded random weights so that they change the output."""

import json
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten
from mlx_lm.tuner.utils import linear_to_lora_layers
from mlx_lm.utils import load_model

LORA_PARAMETERS = {"rank": 8, "dropout": 0.0, "scale": 20.0}
NUM_LAYERS = 2


def write_adapter(base: Path, out: Path, kind: str, seed: int, rank: int = 8) -> Path:
    """`kind` is lora, dora or full; returns `out`, holding both files."""
    mx.random.seed(seed)
    model: Any = load_model(base)[0]
    model.freeze()
    parameters = {**LORA_PARAMETERS, "rank": rank}
    if kind == "full":
        for layer in model.layers[-NUM_LAYERS:]:
            layer.unfreeze()
    else:
        linear_to_lora_layers(model, NUM_LAYERS, parameters, use_dora=kind == "dora")
    trained = dict(tree_flatten(model.trainable_parameters()))
    # Seeded random in place of training: lora_b starts at zero, which would change nothing.
    weights = {name: _perturbed(name, value) for name, value in trained.items()}
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "adapters.safetensors"), weights)
    config = {"fine_tune_type": kind, "num_layers": NUM_LAYERS, "lora_parameters": parameters}
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return out


def _perturbed(name: str, value: mx.array) -> mx.array:
    noise = mx.random.normal(value.shape)
    if name.endswith(("lora_a", "lora_b")):
        return noise * 0.05
    return value + noise * 0.02  # full weights and DoRA magnitudes: nudged
