"""Adapter variants: the base model's class and weights, with an adapter applied on top.

A variant shares every array of the base model (MLX arrays are immutable, so updating a
second module tree with them copies nothing); only the adapter's own tensors are new. The
adapter is applied by mlx-lm's `load_adapters`, so its output is `mlx_lm.load(base,
adapter_path=...)`'s.
"""

from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten
from mlx_lm.tuner.utils import load_adapters
from mlx_lm.utils import load_model

from modelkube_serving.models.adapters import read_adapter_config


def build_variant(base: Any, base_path: Path, adapter_path: Path) -> Any:
    """A model of `base`'s class that serves `adapter_path`; runs on the engine thread."""
    read_adapter_config(adapter_path)  # a clear message for what mlx-lm would KeyError on
    # The same class, arguments and quantization as mlx-lm gives the base. Lazy: the weight
    # files are mapped but never read, since the base's arrays replace them below.
    model, _ = load_model(base_path, lazy=True)
    shared = dict(tree_flatten(base.parameters()))
    if set(shared) != set(dict(tree_flatten(model.parameters()))):
        raise ValueError(f"the model at {base_path} no longer matches the loaded base model")
    model.update(base.parameters())
    load_adapters(model, str(adapter_path))
    if mx.default_device() == mx.cpu:
        # As for the base: no BLAS path for bf16/fp16 on the CPU backend. Arrays that are
        # float32 already are returned as they are, still shared.
        model.set_dtype(mx.float32)
    model.eval()
    mx.eval(model.parameters())
    return model
