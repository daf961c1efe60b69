"""GGUF conversion: a GGUF file written the way llama.cpp writes one must serve the same model.

The file is made from builtin://tiny: its tensors under GGUF names with the q/k rows
permuted as llama.cpp's converter permutes them (written out here, independently of the
code under test), its vocabulary and merges as `tokenizer.ggml.*` metadata. The converted
directory must give the same logits and the same token ids as tiny itself.
"""

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import pytest
from mlx.utils import tree_unflatten
from mlx_lm import load

from modelkube_serving.cli import served_name
from modelkube_serving.models.builtin import ensure_builtin
from modelkube_serving.models.gguf import ensure_gguf, hf_tensor_name, unpermute_rows
from modelkube_serving.models.uri import UnsupportedModelError, resolve_model, split_hf_file

HF_TO_GGUF = {
    "model.embed_tokens": "token_embd",
    "model.norm": "output_norm",
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
TEXTS = ["Hello world", "café 12345 日本語 🎉", "def f(x):\n    return x**2", "<|im_start|>a b"]


def llamacpp_permute(w: mx.array, heads: int) -> mx.array:
    """What llama.cpp's convert_hf_to_gguf.py does to the q and k rows of a llama model."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_name(hf: str) -> str:
    base, part = hf.rsplit(".", 1)
    if base.startswith("model.layers."):
        _, _, layer, module = base.split(".", 3)
        return f"blk.{layer}.{HF_TO_GGUF[module]}.{part}"
    return f"{HF_TO_GGUF[base]}.{part}"


def u32(value: int) -> mx.array:
    return mx.array(value, dtype=mx.uint32)


def tokenizer_metadata() -> dict[str, Any]:
    """builtin://tiny's byte-level BPE vocabulary as llama.cpp's converter stores it."""
    base = ensure_builtin("tiny")
    spec = json.loads((base / "tokenizer.json").read_text())
    size = 1 + max(spec["model"]["vocab"].values())
    tokens = [""] * size
    for token, token_id in spec["model"]["vocab"].items():
        tokens[token_id] = token
    types = [1] * size
    for added in spec["added_tokens"]:
        tokens[added["id"]] = added["content"]
        types[added["id"]] = 3 if added["special"] else 4
    template = json.loads((base / "tokenizer_config.json").read_text())["chat_template"]
    return {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": mx.array(types, dtype=mx.int32),
        "tokenizer.ggml.merges": [
            m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]
        ],
        "tokenizer.ggml.eos_token_id": u32(1),
        "tokenizer.chat_template": template,
    }


def write_gguf(path: Path, arch: str, config: dict[str, Any], weights: dict[str, mx.array]) -> Path:
    """`weights` (mlx-lm names) and `config` as llama.cpp writes a GGUF file of `arch`."""
    tensors: dict[str, mx.array] = {}
    for name, value in weights.items():
        if arch == "llama" and ".q_proj." in name:
            value = llamacpp_permute(value, config["num_attention_heads"])
        elif arch == "llama" and ".k_proj." in name:
            value = llamacpp_permute(value, config["num_key_value_heads"])
        tensors[gguf_name(name)] = value
    meta: dict[str, Any] = {
        "general.architecture": arch,
        f"{arch}.block_count": u32(config["num_hidden_layers"]),
        f"{arch}.context_length": u32(config["max_position_embeddings"]),
        f"{arch}.embedding_length": u32(config["hidden_size"]),
        f"{arch}.feed_forward_length": u32(config["intermediate_size"]),
        f"{arch}.attention.head_count": u32(config["num_attention_heads"]),
        f"{arch}.attention.head_count_kv": u32(config["num_key_value_heads"]),
        f"{arch}.attention.layer_norm_rms_epsilon": mx.array(config["rms_norm_eps"]),
        f"{arch}.rope.freq_base": mx.array(config["rope_theta"]),
        **tokenizer_metadata(),
    }
    mx.save_gguf(str(path), tensors, meta)
    return path


def write_tiny_gguf(path: Path, architecture: str = "llama") -> Path:
    base = ensure_builtin("tiny")
    config = json.loads((base / "config.json").read_text())
    weights = mx.load(str(base / "model.safetensors"))
    assert isinstance(weights, dict)
    return write_gguf(path, architecture, config, weights)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ensure_builtin("tiny")  # from the real cache, before it is moved
    monkeypatch.setenv("MODELKUBE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_unpermute_undoes_llamacpps_permutation() -> None:
    w = mx.arange(12 * 8 * 3).reshape(12 * 8, 3)
    for heads in (1, 3, 12):
        assert mx.array_equal(unpermute_rows(llamacpp_permute(w, heads), heads), w)
    # Per head: without it the rows are really reordered, so the test above can fail.
    assert not mx.array_equal(llamacpp_permute(w, 3), w)


@pytest.mark.parametrize(
    ("gguf", "hf"),
    [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
        ("blk.7.attn_q.scales", "model.layers.7.self_attn.q_proj.scales"),
        ("blk.0.attn_output.weight", "model.layers.0.self_attn.o_proj.weight"),
        ("blk.29.ffn_down.biases", "model.layers.29.mlp.down_proj.biases"),
        ("blk.3.attn_v.bias", "model.layers.3.self_attn.v_proj.bias"),
    ],
)
def test_tensor_names_map_to_mlx_lm(gguf: str, hf: str) -> None:
    assert hf_tensor_name(gguf) == hf


def test_unknown_tensors_are_refused_by_name() -> None:
    with pytest.raises(UnsupportedModelError, match=r"blk\.0\.ssm_conv1d\.weight"):
        hf_tensor_name("blk.0.ssm_conv1d.weight")
    with pytest.raises(UnsupportedModelError, match="rope_freqs"):
        hf_tensor_name("rope_freqs.weight")


def test_converted_gguf_serves_the_same_model(tmp_path: Path, cache: Path) -> None:
    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    messages: list[str] = []
    path = resolve_model(str(source), progress=messages.append, dtype="float32")
    assert path.parent == cache / "models"
    assert any("llama, 4 layers" in m for m in messages)
    model, tokenizer = load(str(path))
    reference, reference_tokenizer = load(str(ensure_builtin("tiny")))
    for text in TEXTS:
        assert tokenizer.encode(text) == reference_tokenizer.encode(text), text
    ids = mx.array([reference_tokenizer.encode(TEXTS[2])])
    assert mx.allclose(model(ids), reference(ids), atol=1e-4).item()
    assert 1 in tokenizer.eos_token_ids
    chat = [{"role": "user", "content": "hi"}]
    assert tokenizer.apply_chat_template(chat, tokenize=False) == (
        reference_tokenizer.apply_chat_template(chat, tokenize=False)
    )
    # Keyed by content: the next start reuses it, without converting again.
    messages.clear()
    assert ensure_gguf(source, "float32", messages.append) == path
    assert messages == [f"gguf: tiny.gguf: reusing {path}"]


def test_unsupported_architecture_is_one_clear_line(tmp_path: Path, cache: Path) -> None:
    source = write_tiny_gguf(tmp_path / "mamba.gguf", architecture="mamba")
    with pytest.raises(UnsupportedModelError, match="GGUF architecture 'mamba' is not supported"):
        resolve_model(str(source))
    assert not list((cache / "models").glob("gguf-*"))  # nothing half-written is left
    run = subprocess.run(
        [sys.executable, "-m", "modelkube_serving", "serve", "--model", str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"MODELKUBE_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "modelkube serve: error: GGUF architecture 'mamba' is not supported "
        "(supported: llama, qwen2)"
    ]


def test_hub_gguf_uris_name_a_file() -> None:
    assert split_hf_file("org/repo/model.Q4_0.gguf") == ("org/repo", None, "model.Q4_0.gguf")
    assert split_hf_file("org/repo@v1/sub/m.gguf") == ("org/repo", "v1", "sub/m.gguf")
    assert served_name("hf://org/repo/SmolLM2.Q4_1.gguf") == "SmolLM2.Q4_1"
    assert served_name("pvc://claim/dir/model.gguf") == "model"


def test_qwen2_converts_without_unpermuting(tmp_path: Path, cache: Path) -> None:
    from mlx.utils import tree_flatten
    from mlx_lm.models import qwen2

    config = json.loads((ensure_builtin("tiny") / "config.json").read_text())
    config.update(model_type="qwen2", rope_theta=1000000.0, rms_norm_eps=1e-6)
    mx.random.seed(3)
    reference = qwen2.Model(qwen2.ModelArgs.from_dict(config))
    flat = cast(list[tuple[str, mx.array]], tree_flatten(reference.parameters()))
    params = {k: mx.random.normal(v.shape) * 0.05 for k, v in flat}
    reference.update(tree_unflatten(list(params.items())))
    assert any(k.endswith("q_proj.bias") for k in params)  # qwen2's attention has biases
    source = write_gguf(tmp_path / "q.gguf", "qwen2", config, params)
    model, _ = load(str(resolve_model(str(source), dtype="float32")))
    ids = mx.array([[5, 17, 300, 2, 99, 1000]])
    assert mx.allclose(model(ids), reference(ids), atol=1e-4).item()


_CONVERT_EACH = """
import sys
from pathlib import Path
from modelkube_serving.models.errors import ModelSourceError
from modelkube_serving.models.uri import resolve_model
for path in sys.argv[1:]:
    try:
        resolve_model(path)
        print("ok", path, flush=True)
    except ModelSourceError as exc:  # UnsupportedModelError is one too
        lines = str(exc).splitlines()
        print("refused" if len(lines) == 1 else "multiline", path, flush=True)
"""


def test_corrupted_gguf_files_are_refused_in_one_line(tmp_path: Path, cache: Path) -> None:
    """Generated damage (truncations, flipped bytes, zeroed runs) at seeded random places: each
    file converts or is refused with one line; nothing else escapes, and the reader does not
    crash the process (they all run in one child, so a crash would stop it early)."""
    good = write_tiny_gguf(tmp_path / "good.gguf").read_bytes()
    rng = random.Random(1234)
    paths = []
    for i in range(24):
        data = bytearray(good)
        kind = i % 3
        at = rng.randrange(len(data))
        if kind == 0:
            data = data[:at]
        elif kind == 1:
            for j in rng.sample(range(len(data)), 16):
                data[j] ^= 0xFF
        else:
            data[at : at + rng.randrange(1, 4096)] = bytes(min(4096, len(data) - at))
        path = tmp_path / f"bad-{i}.gguf"
        path.write_bytes(bytes(data))
        paths.append(str(path))
    run = subprocess.run(
        [sys.executable, "-c", _CONVERT_EACH, *paths],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MODELKUBE_CACHE_DIR": str(cache)},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    outcomes = [line.split()[0] for line in run.stdout.splitlines()]
    assert len(outcomes) == len(paths), run.stdout
    assert set(outcomes) <= {"ok", "refused"}, run.stdout
    # A truncated file is refused; flipped or zeroed bytes may land in weights, which load.
    assert all(outcome == "refused" for outcome in outcomes[::3]), run.stdout
