"""The serving benchmark keeps every request as it went (bench/serving/client.py, stats.py),
measured against a real runtime: the llama.cpp engine on builtin://tiny."""

import asyncio

from bench.serving.client import run_load
from bench.serving.stats import summarise_round
from tests.serving.inprocess import InProcessRuntime


def test_a_round_keeps_each_request_with_its_times_and_cache_use(
    llamacpp_runtime: InProcessRuntime,
) -> None:
    run = asyncio.run(run_load(llamacpp_runtime.url, "tiny", 2, 4, 10, 4, 60.0))
    records = summarise_round(run).per_request

    assert [r.error for r in records] == [None] * 4
    assert sorted(r.index for r in records) == [10, 11, 12, 13]
    assert [r.sent_ms for r in records] == sorted(r.sent_ms for r in records)
    for record in records:
        assert record.ttft_ms is not None and record.first_token_ms is not None
        assert record.first_token_ms == record.sent_ms + record.ttft_ms
        assert record.e2e_ms is not None and record.e2e_ms >= record.ttft_ms
        assert record.prompt_tokens > 0 and record.completion_tokens == 4
    # Each client sends its second request once its first has ended...
    first, second = records[:2], records[2:]
    assert min(r.sent_ms for r in second) >= min(r.sent_ms + (r.e2e_ms or 0) for r in first)
    # ...on a sequence whose cells still hold the chat template's start: a cache hit.
    assert all(r.cached_tokens > 0 for r in second)
