"""mlx-lm LoRA adapters as GGUF LoRA files: the same weight update, in llama.cpp's layout."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelkube_serving.models.gguf_lora import (
    UnsupportedAdapterError,
    ensure_lora_gguf,
    lora_tensors,
)
from modelkube_serving.models.hf_gguf import permute_rows

CONFIG: dict[str, Any] = {"num_attention_heads": 4, "num_key_value_heads": 2}
HIDDEN, KV, RANK = 32, 16, 4


def adapter_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    shapes = (("self_attn.q_proj", HIDDEN), ("self_attn.k_proj", KV), ("mlp.up_proj", 8))
    for module, rows in shapes:
        base = f"model.layers.1.{module}"
        out[f"{base}.lora_a"] = rng.standard_normal((HIDDEN, RANK)).astype(np.float32)
        out[f"{base}.lora_b"] = rng.standard_normal((RANK, rows)).astype(np.float32)
    return out


def write_adapter(path: Path, kind: str = "lora", seed: int = 0) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    params = {"rank": RANK, "scale": 20.0, "dropout": 0.0}
    config = {"fine_tune_type": kind, "num_layers": 2, "lora_parameters": params}
    (path / "adapter_config.json").write_text(json.dumps(config))
    save_file(adapter_weights(seed), str(path / "adapters.safetensors"))
    return path


@pytest.mark.parametrize(
    ("module", "heads"),
    [("self_attn.q_proj", 4), ("self_attn.k_proj", 2), ("mlp.up_proj", None)],
)
def test_llamacpps_update_is_mlx_lms_in_the_permuted_layout(module: str, heads: int | None) -> None:
    """llama.cpp adds alpha/rank * B @ A to its (permuted) weight; mlx-lm adds
    scale * (lora_a @ lora_b).T to the HF weight: the two must be the same matrix."""
    weights = adapter_weights()
    tensors, alpha = lora_tensors(weights, 20.0, RANK, CONFIG)
    name = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "mlp.up_proj": "ffn_up"}
    a = tensors[f"blk.1.{name[module]}.weight.lora_a"]
    b = tensors[f"blk.1.{name[module]}.weight.lora_b"]
    assert a.shape == (RANK, HIDDEN)  # ggml ne = [in, rank], as llama-adapter.cpp checks
    mlx_delta = (
        20.0
        * (
            weights[f"model.layers.1.{module}.lora_a"] @ weights[f"model.layers.1.{module}.lora_b"]
        ).T
    )
    expected = permute_rows(mlx_delta, heads) if heads else mlx_delta
    assert np.allclose(alpha / RANK * (b @ a), expected, atol=1e-4)


@pytest.mark.parametrize("kind", ["dora", "full"])
def test_methods_llamacpp_cannot_serve_are_one_clear_line(tmp_path: Path, kind: str) -> None:
    adapter = write_adapter(tmp_path / kind, kind)
    with pytest.raises(UnsupportedAdapterError, match=f"fine_tune_type '{kind}' is not served"):
        ensure_lora_gguf(adapter, CONFIG, tmp_path / "cache")
    assert not list(adapter.glob("*.gguf"))


def test_dora_magnitudes_are_refused_by_name() -> None:
    weights = {**adapter_weights(), "model.layers.1.mlp.up_proj.m": np.ones(8, np.float32)}
    with pytest.raises(UnsupportedAdapterError, match=r"up_proj\.m: only LoRA"):
        lora_tensors(weights, 20.0, RANK, CONFIG)


def test_converted_beside_the_adapter_and_again_when_it_changes(tmp_path: Path) -> None:
    adapter = write_adapter(tmp_path / "tag")
    first = ensure_lora_gguf(adapter, CONFIG, tmp_path / "cache")
    assert first.parent == adapter
    assert ensure_lora_gguf(adapter, CONFIG, tmp_path / "cache") == first
    write_adapter(adapter, seed=1)  # retrained in place
    second = ensure_lora_gguf(adapter, CONFIG, tmp_path / "cache")
    assert second != first
    assert second.parent == adapter
