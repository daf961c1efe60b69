"""mlx-lm LoRA adapters (what `modelkube finetune` writes) as GGUF LoRA files for llama.cpp.

What llama.cpp's convert_lora_to_gguf.py writes, from mlx-lm's layout instead of PEFT's:
`general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and per adapted
linear layer `blk.N.<module>.weight.lora_a` / `.lora_b`.

The arithmetic, so the two engines compute the same thing: mlx-lm adds
`scale * (x @ lora_a) @ lora_b`, lora_a of shape (in, rank) and lora_b (rank, out). llama.cpp
adds `s * alpha / rank * B(A x)` (llama-adapter.h `get_scale`, s = the scale given to
llama_set_adapters_lora), with A stored as (rank, in) and B as (out, rank) in numpy order.
So A = lora_a.T, B = lora_b.T, alpha = scale * rank, and the runtime sets s = 1. A llama
base's q and k rows are permuted for llama.cpp's rope layout (hf_gguf.permute_rows), so B's
rows, the output features, are permuted alike.

Only LoRA converts: DoRA's magnitude vector and a full fine-tune's weights have no GGUF
LoRA form, and say so in one line (the operator's AdaptersReady=False reason).
"""

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from modelkube_serving.models.adapters import AdapterSpecError, read_adapter_config
from modelkube_serving.models.errors import UnsupportedModelError
from modelkube_serving.models.hf_gguf import gguf_tensor_name, permute_rows

# Bump when the conversion changes so a cached file is rewritten, never reused stale.
CONVERTER_VERSION = 1
ADAPTER_FILES = ("adapter_config.json", "adapters.safetensors")


class UnsupportedAdapterError(UnsupportedModelError):
    """An adapter the llama.cpp engine cannot serve (DoRA, a full fine-tune, ...)."""


def lora_tensors(
    weights: dict[str, np.ndarray], scale: float, rank: int, config: dict[str, Any]
) -> tuple[dict[str, np.ndarray], float]:
    """mlx-lm's lora_a/lora_b under llama.cpp's names and shapes, and the alpha to write."""
    out: dict[str, np.ndarray] = {}
    for name, value in weights.items():
        module, _, part = name.rpartition(".")
        if part not in ("lora_a", "lora_b"):
            raise UnsupportedAdapterError(
                f"tensor {name}: only LoRA's lora_a and lora_b convert for llama.cpp"
            )
        held = value.shape[1] if part == "lora_a" else value.shape[0]
        if value.ndim != 2 or held != rank:
            # llama.cpp would load it and scale by the tensors' rank, silently wrong.
            raise UnsupportedAdapterError(
                f"tensor {name} of shape {list(value.shape)} is not of rank {rank}, "
                "as adapter_config.json says"
            )
        matrix = np.ascontiguousarray(np.asarray(value, dtype=np.float32).T)
        permuted = part == "lora_b" and config.get("model_type", "llama") == "llama"
        if permuted and module.endswith(".self_attn.q_proj"):
            matrix = permute_rows(matrix, config["num_attention_heads"])
        elif permuted and module.endswith(".self_attn.k_proj"):
            matrix = permute_rows(matrix, config["num_key_value_heads"])
        out[f"{gguf_tensor_name(module + '.weight')}.{part}"] = matrix
    return out, scale * rank


def write_lora_gguf(adapter_dir: Path, base_config: dict[str, Any], out: Path) -> None:
    import gguf
    from safetensors.numpy import load_file

    try:
        config = read_adapter_config(adapter_dir)
    except AdapterSpecError as exc:
        raise UnsupportedAdapterError(str(exc)) from exc
    if config.fine_tune_type != "lora":
        raise UnsupportedAdapterError(
            f"fine_tune_type {config.fine_tune_type!r} is not served on the llama.cpp engine "
            "(it serves LoRA adapters; use --engine mlx)"
        )
    rank, scale = int(config.lora_parameters["rank"]), float(config.lora_parameters["scale"])
    try:
        weights = load_file(str(adapter_dir / "adapters.safetensors"))
    except Exception as exc:  # safetensors raises its own error types for a bad file
        raise UnsupportedAdapterError(f"cannot read adapters.safetensors: {exc}") from exc
    tensors, alpha = lora_tensors(weights, scale, rank, base_config)
    # llama.cpp refuses an adapter whose architecture is not the model's.
    writer = gguf.GGUFWriter(str(out), str(base_config.get("model_type", "llama")))
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for name, value in tensors.items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _digest(adapter_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in ADAPTER_FILES:
        with (adapter_dir / name).open("rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:16]


def ensure_lora_gguf(adapter_dir: Path, base_config: dict[str, Any], fallback: Path) -> Path:
    """The GGUF LoRA of `adapter_dir`, written beside it on first use (keyed by the adapter's
    content, so a retrained adapter in the same place is converted again), or under
    `fallback` where the adapter's directory is read-only (a hub snapshot, a mounted claim)."""
    name = f"adapter-gguf-v{CONVERTER_VERSION}-{_digest(adapter_dir)}.gguf"
    for folder in (adapter_dir, fallback):
        if (folder / name).is_file():
            return folder / name
    folder = adapter_dir if os.access(adapter_dir, os.W_OK) else fallback
    folder.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=".adapter-gguf-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write_lora_gguf(adapter_dir, base_config, Path(staging))
        Path(staging).replace(folder / name)
    finally:
        Path(staging).unlink(missing_ok=True)
    return folder / name
