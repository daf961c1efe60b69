"""Prompt token ids of builtin://smollm2-135m-instruct equal llama.cpp's for the same GGUF file.

The reference ids are a checked-in fixture made by llama.cpp's tokenizer (see
tests/serving/token_parity.py for the command that regenerates it): accents, CJK, emoji,
digits, code, whitespace, special tokens inside text, and chats rendered by the template.
"""

import json

import pytest
from mlx_lm.tokenizer_utils import load

from modelkube_serving.models.gguf import content_hash
from modelkube_serving.models.packaged import packaged_gguf
from modelkube_serving.models.uri import resolve_model
from tests.serving.token_parity import FIXTURE, TEXTS, rendered_chats

pytestmark = pytest.mark.real_model


def test_prompt_ids_equal_llama_cpps() -> None:
    fixture = json.loads(FIXTURE.read_text())
    assert fixture["gguf_sha256"] == content_hash(packaged_gguf("smollm2-135m-instruct"))
    path = resolve_model("builtin://smollm2-135m-instruct")
    cases = fixture["cases"]
    assert [c["text"] for c in cases] == TEXTS + rendered_chats(path)
    tokenizer = load(path)
    wrong = [c["text"] for c in cases if tokenizer.encode(c["text"]) != c["ids"]]
    assert not wrong
