"""The random-weight built-ins written out as GGUF: the same model on both engines.

The written file is read back two independent ways: by our GGUF-to-mlx-lm conversion (whose
reading of llama.cpp's layout test_gguf checks against llama.cpp's own permutation), which
must give tiny's logits and token ids; and by llama.cpp itself, whose greedy answers must be
MLX's token for token.
"""

import json
import shutil
from pathlib import Path

import httpx
import mlx.core as mx
import numpy as np
import pytest
from mlx_lm import load

from modelkube_serving.engine.llamacpp_engine import gguf_source
from modelkube_serving.models.builtin import builtin_path, ensure_builtin, is_builtin_dir
from modelkube_serving.models.errors import UnsupportedModelError
from modelkube_serving.models.gguf import ensure_gguf, unpermute_rows
from modelkube_serving.models.hf_gguf import (
    CONVERTER_VERSION,
    ensure_hf_gguf,
    gguf_file,
    gguf_tensor_name,
    permute_rows,
    vocabulary,
)
from tests.serving.inprocess import InProcessRuntime

PROMPTS = ["Hello world", "The cat sat on", "def f(x):\n    return", "1, 2, 3,"]


@pytest.fixture(scope="module")
def tiny_gguf() -> Path:
    return ensure_hf_gguf(ensure_builtin("tiny"))


def test_permute_is_what_the_gguf_reader_undoes() -> None:
    w = np.arange(16 * 8 * 3).reshape(16 * 8, 3)
    for heads in (1, 4, 16):
        assert np.array_equal(np.array(unpermute_rows(mx.array(permute_rows(w, heads)), heads)), w)
    assert not np.array_equal(permute_rows(w, 4), w)


@pytest.mark.parametrize(
    ("hf", "gguf"),
    [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("model.layers.3.self_attn.k_proj.weight", "blk.3.attn_k.weight"),
        ("model.layers.11.mlp.down_proj.weight", "blk.11.ffn_down.weight"),
        ("model.layers.0.post_attention_layernorm.weight", "blk.0.ffn_norm.weight"),
    ],
)
def test_tensor_names_are_llamacpps(hf: str, gguf: str) -> None:
    assert gguf_tensor_name(hf) == gguf


def test_unknown_tensors_are_refused_by_name() -> None:
    with pytest.raises(UnsupportedModelError, match=r"model\.layers\.0\.mlp\.experts\.weight"):
        gguf_tensor_name("model.layers.0.mlp.experts.weight")


def test_vocabulary_keeps_ids_and_marks_special_tokens() -> None:
    spec = json.loads((ensure_builtin("tiny") / "tokenizer.json").read_text())
    tokens, types, merges = vocabulary(spec)
    assert tokens[:3] == ["<|endoftext|>", "<|im_end|>", "<|im_start|>"]
    assert types[:4] == [3, 3, 3, 1]
    assert all(tokens[i] == tok for tok, i in spec["model"]["vocab"].items())
    assert merges[0] == " ".join(spec["model"]["merges"][0])


def test_written_gguf_reads_back_as_tiny(
    tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ensure_builtin("tiny")
    assert tiny_gguf == base / f"model-gguf-v{CONVERTER_VERSION}.gguf"
    monkeypatch.setenv("MODELKUBE_CACHE_DIR", str(tmp_path / "cache"))
    back, back_tokenizer = load(str(ensure_gguf(tiny_gguf, "float32")))
    model, tokenizer = load(str(base))
    text = "def f(x):\n    return x**2 <|im_start|>"
    assert back_tokenizer.encode(text) == tokenizer.encode(text)
    # The reader also ends on <|endoftext|> (id 0), as llama.cpp does with any GGUF file.
    assert back_tokenizer.eos_token_ids == {*tokenizer.eos_token_ids, 0}
    ids = mx.array([tokenizer.encode(text)])
    assert mx.allclose(back(ids), model(ids), atol=1e-5).item()


def test_only_builtin_directories_are_written(tmp_path: Path) -> None:
    copy = tmp_path / "tiny-copy"
    shutil.copytree(ensure_builtin("tiny"), copy, ignore=shutil.ignore_patterns("*.gguf"))
    assert is_builtin_dir(builtin_path("tiny"))
    assert not is_builtin_dir(copy)
    with pytest.raises(UnsupportedModelError, match=r"the llama\.cpp engine serves GGUF models"):
        gguf_source(copy)
    assert not gguf_file(copy).exists()


def test_gguf_source_of_a_builtin_is_its_written_file(tiny_gguf: Path) -> None:
    assert gguf_source(ensure_builtin("tiny")) == tiny_gguf


def test_tiny_answers_on_llamacpp_as_on_mlx(
    runtime: InProcessRuntime, llamacpp_runtime: InProcessRuntime
) -> None:
    """Same weights, same tokenizer: greedy answers agree token for token."""
    for prompt in PROMPTS:
        answers = []
        for served in (runtime, llamacpp_runtime):
            body = {"model": "tiny", "prompt": prompt, "max_tokens": 12, "temperature": 0}
            reply = httpx.post(f"{served.url}/v1/completions", json=body, timeout=60)
            assert reply.status_code == 200, reply.text
            choice = reply.json()["choices"][0]
            answers.append((choice["text"], reply.json()["usage"]))
        assert answers[0][0], prompt  # something was generated, so equality means something
        assert answers[1] == answers[0], prompt
