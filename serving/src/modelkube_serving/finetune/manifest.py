"""The finished adapter's files: mlx-lm's two, then our manifest, written last.

`adapters.safetensors` and `adapter_config.json` are exactly what `mlx_lm.lora` writes, so
`mlx_lm.load(base, adapter_path=...)` reads the adapter unchanged. `manifest.json` says what
produced it; its presence means the adapter is complete.
"""

import datetime
import json
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten

from modelkube_serving.finetune.checkpoint import write_json_atomically
from modelkube_serving.finetune.config import TrainConfig

MANIFEST = "manifest.json"
WEIGHTS = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def adapter_config(config: TrainConfig) -> dict[str, Any]:
    """The fields mlx-lm's `load_adapters` reads, as `mlx_lm.lora` writes them."""
    return {
        "fine_tune_type": config.method,
        "num_layers": config.num_layers,
        "lora_parameters": config.lora_parameters() if config.method != "full" else None,
        "model": config.base,
        "iters": config.iterations,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "max_seq_length": config.max_seq_length,
        "mask_prompt": config.mask_prompt,
    }


def write_adapter(
    config: TrainConfig, model: Any, run_key: str, data_hash: str, losses: dict[str, Any]
) -> dict[str, Any]:
    out = config.output
    staging = out / ".adapters.tmp.safetensors"  # MLX insists on the suffix
    mx.save_safetensors(str(staging), dict(tree_flatten(model.trainable_parameters())))
    staging.replace(out / WEIGHTS)
    write_json_atomically(out / ADAPTER_CONFIG, adapter_config(config))
    manifest = {
        "baseModel": config.base,
        "method": config.method,
        "hyperparameters": config.hyperparameters(),
        "dataHash": data_hash,
        "runKey": run_key,
        "finalLosses": losses,
        "completionTime": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "files": [WEIGHTS, ADAPTER_CONFIG],
    }
    write_json_atomically(out / MANIFEST, manifest)
    return manifest


def read_manifest(output: Path) -> dict[str, Any] | None:
    try:
        manifest: dict[str, Any] = json.loads((output / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest
