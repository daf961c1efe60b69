"""The images the operator stamps into pods, from its configuration (the chart's images.*).

A spec that names no image gets these, so upgrading the operator (and its configured images)
rolls every ModelService that did not pin one. The values come from the operator's
environment, which the chart sets; the defaults are for a checkout (`make demo`).
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

RUNTIME_ENV = "MODELKUBE_RUNTIME_IMAGE"
RUNTIME_CUDA_ENV = "MODELKUBE_RUNTIME_CUDA_IMAGE"
TRAINER_ENV = "MODELKUBE_TRAINER_IMAGE"
DEFAULT_RUNTIME = "ghcr.io/modelkube/runtime:0.1.0"
DEFAULT_RUNTIME_CUDA = "ghcr.io/modelkube/runtime:0.1.0-cuda"
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class Images:
    runtime: str = DEFAULT_RUNTIME
    # For pods that ask for an NVIDIA GPU: MLX's CUDA backend.
    runtime_cuda: str = DEFAULT_RUNTIME_CUDA
    # The trainer runs `modelkube finetune` from the runtime image unless told otherwise.
    trainer: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Images":
        runtime = environ.get(RUNTIME_ENV) or DEFAULT_RUNTIME
        return cls(
            runtime=runtime,
            runtime_cuda=environ.get(RUNTIME_CUDA_ENV) or DEFAULT_RUNTIME_CUDA,
            trainer=environ.get(TRAINER_ENV) or runtime,
        )

    def serving(self, wants_gpu: bool) -> str:
        return self.runtime_cuda if wants_gpu else self.runtime

    def training(self, wants_gpu: bool) -> str:
        if wants_gpu:
            return self.runtime_cuda
        return self.trainer or self.runtime


@cache
def configured() -> Images:
    """The operator process's images (its environment does not change while it runs)."""
    return Images.from_environ(os.environ)
