"""The llama.cpp engine's greedy tokens on builtin://smollm2-135m-instruct equal llama.cpp's
own server's, token for token (the fixture and its regeneration: greedy_parity.py)."""

import json

import pytest
from modelkube_native import LlamaEngine

from modelkube_serving.engine.llamacpp_engine import gguf_source
from modelkube_serving.models.gguf import content_hash
from modelkube_serving.models.packaged import packaged_gguf
from modelkube_serving.models.uri import resolve_model
from tests.serving.greedy_parity import FIXTURE, prompts

pytestmark = pytest.mark.real_model


def test_greedy_tokens_equal_llama_servers() -> None:
    fixture = json.loads(FIXTURE.read_text())
    assert fixture["gguf_sha256"] == content_hash(packaged_gguf("smollm2-135m-instruct"))
    path = resolve_model("builtin://smollm2-135m-instruct")
    cases = fixture["cases"]
    assert [c["prompt"] for c in cases] == prompts(path)
    engine = LlamaEngine(gguf_source(path), context_length=1024, n_seq_max=1, n_threads=1)
    got = [engine.generate_greedy(c["prompt"], fixture["max_tokens"]) for c in cases]
    assert got == [c["completion"] for c in cases]
