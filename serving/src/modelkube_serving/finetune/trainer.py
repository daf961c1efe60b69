"""The training run: mlx-lm's tuner pieces, driven by a loop that reports and checkpoints.

The loop is mlx-lm's `tuner.trainer.train` step for step (the same compiled step, loss,
batching and evaluation), so iterations cost what they cost there; around it sit what a Job
needs: checking everything before the first step, progress, checkpoints to resume from, and
a clean stop on SIGTERM.
"""

import threading
import types
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, cast

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
from mlx.nn.utils import value_and_grad
from mlx_lm.tuner.datasets import CacheDataset, create_dataset
from mlx_lm.tuner.trainer import default_loss, evaluate, iterate_batches
from mlx_lm.tuner.utils import linear_to_lora_layers

from modelkube_serving.engine.loading import load_model
from modelkube_serving.finetune import checkpoint
from modelkube_serving.finetune.config import TrainConfig
from modelkube_serving.finetune.dataset import (
    Dataset,
    DatasetError,
    data_hash,
    read_dataset,
    split_validation,
)
from modelkube_serving.finetune.manifest import read_manifest, write_adapter
from modelkube_serving.finetune.progress import Tracker
from modelkube_serving.models.uri import resolve_model


class TrainingError(Exception):
    """The run cannot start or go on; str() is one line for the user."""


class Interrupted(Exception):
    """Stopped on request; a checkpoint holds the last iteration."""

    def __init__(self, iteration: int) -> None:
        super().__init__(f"stopped at iteration {iteration}; rerun the same command to resume")
        self.iteration = iteration


@dataclass(frozen=True)
class Data:
    train: Dataset
    valid: Dataset
    hash: str


@dataclass(frozen=True)
class Result:
    manifest: dict[str, Any]
    resumed_from: int | None = None
    already_done: bool = False


def load_data(config: TrainConfig) -> Data:
    """Read and check the data, and hold out validation examples if none were given."""
    path, valid_path = config.data, config.validation_data
    if path.is_dir():
        valid_path = valid_path or (
            path / "valid.jsonl" if (path / "valid.jsonl").exists() else None
        )
        path = path / "train.jsonl"
    train, raw = read_dataset(path)
    if valid_path is not None:
        valid, raw_valid = read_dataset(valid_path)
    else:
        train, valid = split_validation(train, config.seed)
        raw_valid = b""
    if len(train.records) < config.batch_size:
        raise DatasetError(
            f"{train.source} has {len(train.records)} training examples"
            f"{'' if valid_path else ' after holding some out for validation'}: "
            f"--batch-size {config.batch_size} needs at least {config.batch_size}"
        )
    return Data(train, valid, data_hash(raw, raw_valid))


def finetune(config: TrainConfig, tracker_for: Any, stop: threading.Event) -> Result:
    """Train; `tracker_for(start_iteration, resuming)` gives the progress tracker once the
    start is known."""
    data = load_data(config)
    run_key = config.run_key(data.hash)
    done = read_manifest(config.output)
    if done is not None and done.get("runKey") == run_key:
        # A retried pod whose run had finished: the status still ends at 100%.
        _report_finished(tracker_for(config.iterations, False), done)
        return Result(done, already_done=True)
    if done is not None:
        raise TrainingError(
            f"{config.output} already holds a finished adapter of another run: "
            "choose another --output"
        )
    resume = checkpoint.load(config.output)
    if resume is not None and resume.run_key != run_key:
        raise TrainingError(
            f"{config.output} holds a checkpoint of another run (other data or settings): "
            "choose another --output, or delete it to start over"
        )
    model, tokenizer = load_model(resolve_model(config.base))
    config = replace(config, num_layers=_layers(config, model))
    config.output.mkdir(parents=True, exist_ok=True)
    mx.random.seed(config.seed)
    np.random.seed(config.seed + (resume.iteration if resume else 0))
    _attach(config, model)
    optimizer = optim.Adam(learning_rate=config.learning_rate)
    if resume is not None:
        checkpoint.restore(resume, model, optimizer)
    options = types.SimpleNamespace(mask_prompt=config.mask_prompt)
    train_set = CacheDataset(create_dataset(list(data.train.records), tokenizer, options))
    valid_set = CacheDataset(create_dataset(list(data.valid.records), tokenizer, options))
    start = resume.iteration if resume else 0
    tracker: Tracker = tracker_for(start, resume is not None)
    try:
        losses = _loop(
            config, model, optimizer, train_set, valid_set, start, run_key, tracker, stop
        )
        tracker.phase("saving")
        manifest = write_adapter(config, model, run_key, data.hash, losses)
        checkpoint.remove(config.output)
        tracker.phase("done")
    finally:
        tracker.close()
    return Result(manifest, resumed_from=start or None)


def _report_finished(tracker: Tracker, manifest: dict[str, Any]) -> None:
    losses = manifest.get("finalLosses") or {}
    if "validation" in losses:
        tracker.validation_loss(float(losses["validation"]))
    if "train" in losses:
        tracker.train_loss(float(losses["train"]))
    tracker.phase("done")
    tracker.close()


def _layers(config: TrainConfig, model: Any) -> int:
    layers = len(model.layers)
    wanted = config.layers_for(layers)
    if wanted > layers:
        raise TrainingError(
            f"--num-layers {wanted} is more than the model's {layers} layers (-1 adapts them all)"
        )
    return wanted


def _attach(config: TrainConfig, model: Any) -> None:
    """Freeze the base and make the adapted part trainable, as mlx-lm's `train_model` does."""
    model.freeze()
    if config.method == "full":
        for layer in model.layers[-max(config.num_layers or 0, 0) :]:
            layer.unfreeze()
    else:
        linear_to_lora_layers(
            model,
            config.num_layers or 0,
            config.lora_parameters(),
            use_dora=config.method == "dora",
        )


def _loop(
    config: TrainConfig,
    model: Any,
    optimizer: optim.Optimizer,
    train_set: CacheDataset,
    valid_set: CacheDataset,
    start: int,
    run_key: str,
    tracker: Tracker,
    stop: threading.Event,
) -> dict[str, float]:
    loss_value_and_grad = value_and_grad(model, default_loss)
    state = [model.state, optimizer.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(batch: mx.array, lengths: mx.array) -> tuple[mx.array, mx.array]:
        (value, tokens), grad = loss_value_and_grad(model, batch, lengths)
        optimizer.update(model, grad)
        return value, tokens

    val_batch = min(config.batch_size, len(valid_set))
    final: dict[str, float] = {}
    model.train()
    losses, steps = mx.array(0.0), 0
    batches = iterate_batches(train_set, config.batch_size, config.max_seq_length, loop=True)
    for it in range(start + 1, config.iterations + 1):
        batch, lengths = next(batches)
        if it == start + 1 or it % config.steps_per_eval == 0 or it == config.iterations:
            tracker.phase("validating")
            val_loss = evaluate(
                model, valid_set, val_batch, config.val_batches, config.max_seq_length
            )
            model.train()
            final["validation"] = val_loss
            tracker.validation_loss(val_loss)
        value, _ = step(batch, lengths)
        losses = losses + value
        steps += 1
        mx.eval(state, losses)
        tracker.iteration(it)
        if it % config.steps_per_report == 0 or it == config.iterations:
            final["train"] = cast(float, losses.item()) / steps
            tracker.train_loss(final["train"])
            losses, steps = mx.array(0.0), 0
        if it % config.save_every == 0 and it != config.iterations:
            checkpoint.save(config.output, model, optimizer, it, run_key)
        if stop.is_set() and it != config.iterations:
            checkpoint.save(config.output, model, optimizer, it, run_key)
            tracker.phase("interrupted")
            raise Interrupted(it)
    return final
