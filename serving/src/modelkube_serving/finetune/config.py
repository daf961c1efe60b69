"""What one fine-tuning run is: its inputs, method and hyperparameters."""

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Method = Literal["lora", "dora", "full"]
METHODS: tuple[Method, ...] = ("lora", "dora", "full")
DEFAULT_LAYERS = 16  # mlx-lm's default
LORA_SCALE = 20.0  # mlx-lm's default: the adapter loads the same under mlx_lm.load


@dataclass(frozen=True)
class TrainConfig:
    base: str
    data: Path
    output: Path
    method: Method = "lora"
    validation_data: Path | None = None
    iterations: int = 100
    learning_rate: float = 1e-5
    batch_size: int = 4
    num_layers: int | None = None  # None: the last 16, or all when the model has fewer
    rank: int = 8
    seed: int = 0
    max_seq_length: int = 2048
    mask_prompt: bool = False
    steps_per_report: int = 10
    steps_per_eval: int = 100
    val_batches: int = 25
    save_every: int = 100

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "iterations": self.iterations,
            "learningRate": self.learning_rate,
            "batchSize": self.batch_size,
            "numLayers": self.num_layers,
            "rank": self.rank,
            "seed": self.seed,
            "maxSeqLength": self.max_seq_length,
            "maskPrompt": self.mask_prompt,
        }

    def layers_for(self, model_layers: int) -> int:
        return min(DEFAULT_LAYERS, model_layers) if self.num_layers is None else self.num_layers

    def lora_parameters(self) -> dict[str, float]:
        return {"rank": self.rank, "dropout": 0.0, "scale": LORA_SCALE}

    def run_key(self, data_hash: str) -> str:
        """Same key, same run: a retried pod resumes it; another key must not reuse the output."""
        what = {
            "base": self.base,
            "method": self.method,
            "data": data_hash,
            "hyperparameters": self.hyperparameters(),
        }
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        raw = asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in raw.items()}
