"""GGUF files (llama.cpp, Ollama, LM Studio) as mlx-lm model directories.

`mx.load` reads GGUF directly: Q4_0/Q4_1/Q8_0 tensors come back as MLX affine-quantized
weights (group size 32). What mlx-lm still needs is written here: the tensors under Hugging
Face names with llama.cpp's q/k row permutation undone, a `config.json` from the metadata,
and the tokenizer files (see gguf_tokenizer). The result is cached under the model cache,
keyed by the file's content hash and the stored dtype, so the next start reuses it.
"""

import hashlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelkube_serving.models.builtin import Progress, cache_root
from modelkube_serving.models.errors import ModelSourceError, UnsupportedModelError
from modelkube_serving.models.gguf_tokenizer import rebuild_tokenizer

# Bump when the conversion changes so cached directories are rebuilt, never reused stale.
RECIPE_VERSION = 1

# What `--dtype` accepts: float32 dequantizes (MLX's CPU backend has no fast quantized or
# half-precision matmul), keep serves the tensors as the file stores them, auto picks
# float32 on the CPU and keep on an accelerator.
DTYPES = ("auto", "float32", "keep")


@dataclass(frozen=True)
class Architecture:
    model_type: str
    # llama.cpp's converter permutes the q and k rows of llama models (for its rope
    # layout); the HF layout mlx-lm reads has them unpermuted.
    permuted_qk: bool


ARCHITECTURES: dict[str, Architecture] = {
    "llama": Architecture("llama", permuted_qk=True),
    "qwen2": Architecture("qwen2", permuted_qk=False),
}

_TOP_LEVEL = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_PER_LAYER = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_LAYER_TENSOR = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias|scales|biases)")
_TOP_TENSOR = re.compile(r"(\w+)\.(weight|bias|scales|biases)")


def is_gguf(path: Path) -> bool:
    return path.suffix.lower() == ".gguf"


def hf_tensor_name(name: str) -> str:
    """The mlx-lm (Hugging Face llama) name of GGUF tensor `name`."""
    if match := _LAYER_TENSOR.fullmatch(name):
        layer, module, part = match.groups()
        if module in _PER_LAYER:
            return f"model.layers.{layer}.{_PER_LAYER[module]}.{part}"
    elif (match := _TOP_TENSOR.fullmatch(name)) and match.group(1) in _TOP_LEVEL:
        return f"{_TOP_LEVEL[match.group(1)]}.{match.group(2)}"
    if name.startswith("rope_freqs"):
        raise UnsupportedModelError(
            "tensor rope_freqs (Llama 3.1-style rope scaling) is not supported yet"
        )
    raise UnsupportedModelError(f"unexpected tensor {name} for this architecture")


def unpermute_rows(weight: Any, heads: int) -> Any:
    """Undo llama.cpp's per-head interleaving of the rows of a q or k projection.

    llama.cpp writes w.reshape(heads, 2, rows // heads // 2, ...).swapaxes(1, 2); this is the
    inverse. Rows are the output features, so a quantized weight's packed rows, scales and
    biases are permuted alike.
    """
    rows = weight.shape[0]
    if rows % (2 * heads):
        raise UnsupportedModelError(f"{rows} q/k rows do not split into {heads} heads")
    shape = weight.shape
    return weight.reshape(heads, rows // heads // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def plain_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """mx.load's metadata (MLX scalars and arrays) as Python values."""
    import mlx.core as mx

    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, mx.array):
            out[key] = value.item() if value.ndim == 0 else value.tolist()
        else:
            out[key] = value
    return out


def architecture(meta: Mapping[str, Any]) -> tuple[str, Architecture]:
    name = str(meta.get("general.architecture", "unknown"))
    if name not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise UnsupportedModelError(
            f"GGUF architecture {name!r} is not supported (supported: {known})"
        )
    return name, ARCHITECTURES[name]


def model_config(meta: Mapping[str, Any], tied: bool) -> dict[str, Any]:
    """mlx-lm's `config.json` from the `<arch>.*` hyperparameters."""
    arch, spec = architecture(meta)

    def get(key: str, default: Any = None) -> Any:
        value = meta.get(f"{arch}.{key}", default)
        if value is None:
            raise UnsupportedModelError(f"the GGUF metadata lacks {arch}.{key}")
        return value

    heads = int(get("attention.head_count"))
    hidden = int(get("embedding_length"))
    vocab = meta.get(f"{arch}.vocab_size") or len(meta["tokenizer.ggml.tokens"])
    config: dict[str, Any] = {
        "model_type": spec.model_type,
        "vocab_size": int(vocab),
        "hidden_size": hidden,
        "num_hidden_layers": int(get("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(get("attention.head_count_kv", heads)),
        "intermediate_size": int(get("feed_forward_length")),
        "max_position_embeddings": int(get("context_length")),
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(get("rope.freq_base", 10000.0)),
        "tie_word_embeddings": tied,
        "head_dim": int(get("attention.key_length", hidden // heads)),
    }
    scaling = meta.get(f"{arch}.rope.scaling.type")
    if scaling not in (None, "none"):
        if scaling != "linear":
            raise UnsupportedModelError(f"rope scaling {scaling!r} is not supported yet")
        config["rope_scaling"] = {"type": "linear", "factor": float(get("rope.scaling.factor"))}
    if (window := meta.get(f"{arch}.attention.sliding_window")) is not None:
        config["sliding_window"] = int(window)
    return config


def convert_tensors(
    tensors: Mapping[str, Any], config: Mapping[str, Any], permuted_qk: bool, dequantize: bool
) -> dict[str, Any]:
    """The GGUF tensors under mlx-lm's names, q/k un-permuted, dequantized if asked."""
    import mlx.core as mx

    out: dict[str, Any] = {}
    for name, value in tensors.items():
        hf = hf_tensor_name(name)
        if permuted_qk and ".self_attn.q_proj." in hf:
            value = unpermute_rows(value, config["num_attention_heads"])
        elif permuted_qk and ".self_attn.k_proj." in hf:
            value = unpermute_rows(value, config["num_key_value_heads"])
        out[hf] = value
    if not dequantize:
        return out
    for key in [k for k in out if k.endswith(".scales")]:
        base = key.removesuffix(".scales")
        weight, scales = out[f"{base}.weight"], out.pop(key)
        biases = out.pop(f"{base}.biases", None)
        # GGUF quantizations load with 32 weights per group: bits follow from the packing.
        bits = weight.shape[-1] * 32 // (scales.shape[-1] * 32)
        out[f"{base}.weight"] = mx.dequantize(weight, scales, biases, group_size=32, bits=bits)
    return {
        k: v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v
        for k, v in out.items()
    }


def stored_dtype(dtype: str) -> str:
    """float32 or keep: what the converted directory holds for `--dtype dtype`."""
    if dtype not in DTYPES:
        raise ModelSourceError(f"unknown dtype {dtype!r} (use {', '.join(DTYPES)})")
    if dtype != "auto":
        return dtype
    import mlx.core as mx

    return "float32" if mx.default_device() == mx.cpu else "keep"


def convert(source: Path, out: Path, dtype: str, progress: Progress) -> None:
    """Write the mlx-lm directory of GGUF file `source` into `out` (which exists)."""
    import mlx.core as mx

    try:
        loaded: Any = mx.load(str(source), return_metadata=True)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelSourceError(f"cannot read GGUF file {source}: {reason}") from exc
    tensors: dict[str, Any] = loaded[0]
    meta = plain_metadata(loaded[1])
    arch, spec = architecture(meta)
    tied = "output.weight" not in tensors
    config = model_config(meta, tied)
    progress(
        f"gguf: {source.name}: {arch}, {config['num_hidden_layers']} layers, "
        f"vocabulary {config['vocab_size']}; writing {dtype} weights"
    )
    rebuilt = rebuild_tokenizer(meta, config["max_position_embeddings"])
    config["bos_token_id"] = rebuilt.bos_token_id
    config["eos_token_id"] = rebuilt.eos_token_ids
    weights = convert_tensors(tensors, config, spec.permuted_qk, dequantize=dtype == "float32")
    if dtype == "keep" and any(k.endswith(".scales") for k in weights):
        # mlx-lm infers each layer's bits from its packing; this is the default it starts from.
        config["quantization"] = {"group_size": 32, "bits": 4}
    config["torch_dtype"] = "float32" if dtype == "float32" else "float16"
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "tokenizer.json").write_text(rebuilt.tokenizer_json)
    (out / "tokenizer_config.json").write_text(json.dumps(rebuilt.tokenizer_config, indent=2))
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "source.json").write_text(
        json.dumps({"gguf": str(source), "dtype": dtype, "recipe": RECIPE_VERSION}, indent=2)
    )


def _record_source(target: Path, source: Path) -> None:
    """Point source.json at `source`: the llama.cpp engine loads the GGUF file it names, and
    the file that was converted (same content) may be gone since (another checkout's venv).
    Replaced atomically, so a reader never sees half of it."""
    record = target / "source.json"
    try:
        current = json.loads(record.read_text())
    except (OSError, ValueError):
        return
    if current.get("gguf") == str(source):
        return
    current["gguf"] = str(source)
    fd, tmp = tempfile.mkstemp(prefix=".source-", dir=target)
    with open(fd, "w") as f:
        f.write(json.dumps(current, indent=2))
    Path(tmp).replace(record)


def content_hash(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def converted_path(digest: str, dtype: str) -> Path:
    return cache_root() / "models" / f"gguf-{digest[:24]}-{dtype}-v{RECIPE_VERSION}"


def ensure_gguf(source: Path, dtype: str = "auto", progress: Progress | None = None) -> Path:
    """The mlx-lm directory of GGUF file `source`, converted on first use and cached."""
    say = progress or (lambda _msg: None)
    if not source.is_file():
        raise ModelSourceError(f"no GGUF file at {source}")
    stored = stored_dtype(dtype)
    started = time.monotonic()
    target = converted_path(content_hash(source), stored)
    if (target / "config.json").is_file():
        say(f"gguf: {source.name}: reusing {target}")
        _record_source(target, source)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built aside and renamed into place, so a crash never leaves half a model.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        convert(source, staging, stored, say)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"gguf: {source.name}: converted in {time.monotonic() - started:.1f} s to {target}")
    return target
