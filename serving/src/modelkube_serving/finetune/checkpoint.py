"""Checkpoints a stopped run resumes from: trainable weights, optimizer state, iteration.

Files are written under new names and `state.json` is replaced last, atomically, so a pod
killed mid-save leaves the previous checkpoint whole.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map_with_path

CHECKPOINT_DIR = "checkpoint"


@dataclass(frozen=True)
class Checkpoint:
    iteration: int
    run_key: str
    weights: Path
    optimizer: Path


def save(output: Path, model: Any, optimizer: optim.Optimizer, it: int, key: str) -> None:
    directory = output / CHECKPOINT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"adapters-{it:07d}.safetensors"
    state = directory / f"optimizer-{it:07d}.safetensors"
    mx.save_safetensors(str(weights), dict(tree_flatten(model.trainable_parameters())))
    mx.save_safetensors(str(state), dict(tree_flatten(optimizer.state)))
    record = {"iteration": it, "runKey": key, "weights": weights.name, "optimizer": state.name}
    write_json_atomically(directory / "state.json", record)
    for old in directory.glob("*.safetensors"):
        if old not in (weights, state):
            old.unlink(missing_ok=True)


def load(output: Path) -> Checkpoint | None:
    directory = output / CHECKPOINT_DIR
    try:
        record = json.loads((directory / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return Checkpoint(
        iteration=int(record["iteration"]),
        run_key=str(record["runKey"]),
        weights=directory / record["weights"],
        optimizer=directory / record["optimizer"],
    )


def restore(checkpoint: Checkpoint, model: Any, optimizer: optim.Optimizer) -> None:
    model.load_weights(str(checkpoint.weights), strict=False)
    optimizer.init(model.trainable_parameters())
    saved = mx.load(str(checkpoint.optimizer))
    assert isinstance(saved, dict)

    def saved_value(path: str, value: Any) -> Any:
        return saved.get(path, value)

    optimizer.state = tree_map_with_path(saved_value, optimizer.state)


def remove(output: Path) -> None:
    directory = output / CHECKPOINT_DIR
    if directory.exists():
        for path in directory.glob("*"):
            path.unlink(missing_ok=True)
        directory.rmdir()


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(staging, path)
