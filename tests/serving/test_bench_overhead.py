"""bench.serving.overhead: the bare engine loop it measures the runtime against, on the real
llama.cpp engine (builtin://tiny written out as GGUF), and the overhead arithmetic."""

from collections import deque

import pytest
from mlx_lm.utils import load_tokenizer
from modelkube_native import LlamaEngine, OutputPath, Vocabulary

from bench.serving.ceiling_worker import prompts
from bench.serving.overhead import OverheadRow
from bench.serving.overhead_worker import closed_loop
from modelkube_serving.engine.llamacpp_engine import gguf_source
from modelkube_serving.models.builtin import ensure_builtin


def test_the_bare_loop_runs_every_prompt_to_its_end_within_the_concurrency() -> None:
    path = ensure_builtin("tiny")
    engine = LlamaEngine(gguf_source(path), context_length=256, n_seq_max=4, n_threads=1)
    output = OutputPath(Vocabulary(str(path / "tokenizer.json")))
    queue = deque(prompts(load_tokenizer(path), 0, 5))

    generated = closed_loop(engine, output, queue, concurrency=2, max_tokens=4)

    assert not queue and engine.running == 0 and len(output) == 0
    assert 5 <= generated <= 5 * 4  # each ran, none past max_tokens


def test_overhead_is_the_served_time_per_token_less_the_bare_one() -> None:
    row = OverheadRow(concurrency=4, bare_tok_per_s=100.0, served_tok_per_s=80.0)
    assert row.ratio == pytest.approx(0.8)
    assert row.overhead_us_per_token == pytest.approx(2500.0)
