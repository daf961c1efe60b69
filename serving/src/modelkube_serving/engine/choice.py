"""Which engine serves a model: `--engine mlx|llamacpp|auto`, and building it.

`auto` picks llama.cpp for a GGUF model on a node without an accelerator MLX can use (there
MLX has no fast quantized or half-precision matmul: issue 18 measured llama.cpp 1.8-6x
faster on SmolLM2-135M), and MLX everywhere else (Apple silicon, CUDA, HF-layout models).
"""

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

if TYPE_CHECKING:  # the CLI imports this module: no native core or MLX at import
    from modelkube_serving.engine.types import Engine
    from modelkube_serving.metrics import RuntimeMetrics

EngineKind = Literal["mlx", "llamacpp"]
ENGINE_CHOICES = ("mlx", "llamacpp", "auto")


def is_gguf_model(model_path: Path) -> bool:
    """A model directory converted from a GGUF file (models/gguf.py writes source.json)."""
    return (model_path / "source.json").is_file()


def has_accelerator() -> bool:
    """Whether MLX runs on a GPU here (Metal or CUDA) rather than the CPU."""
    import mlx.core as mx

    return bool(mx.default_device() != mx.cpu)


def choose_engine(requested: str, model_path: Path) -> EngineKind:
    if requested in ("mlx", "llamacpp"):
        return cast(EngineKind, requested)
    if requested != "auto":
        raise ValueError(f"unknown engine {requested!r}: choose one of {', '.join(ENGINE_CHOICES)}")
    return "llamacpp" if is_gguf_model(model_path) and not has_accelerator() else "mlx"


def build_engine(
    kind: EngineKind,
    model_path: Path,
    model_name: str,
    max_batch_size: int,
    metrics: "RuntimeMetrics",
    threads: int = 0,
    context_length: int | None = None,
    prefix_cache_bytes: int | None = None,
) -> "Engine":
    if kind == "llamacpp":
        from modelkube_serving.engine.llamacpp_engine import LlamaCppEngine, LlamaSettings

        settings = LlamaSettings(max_batch_size, context_length, threads=threads)
        return LlamaCppEngine(model_path, model_name, settings, metrics)
    from modelkube_serving.engine.mlx_engine import EngineSettings, MLXEngine

    mlx_settings = EngineSettings(max_batch_size=max_batch_size)
    if prefix_cache_bytes is not None:
        mlx_settings = replace(mlx_settings, prefix_cache_bytes=prefix_cache_bytes)
    return MLXEngine(model_path, model_name, mlx_settings, metrics)
