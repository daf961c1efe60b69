"""One prefill for the `n` choices of a request: the prompt's KV cache computed once, then forked.

mlx-lm's BatchGenerator would prefill each inserted row on its own, so `n` choices would cost `n`
prefills. Here the prompt (all but its last token) is run through the model once, on top of
whatever the prefix cache already holds, and every choice starts from its own copy of that cache
with just the last prompt token left to feed: the same state an exact prefix-cache hit gives.
It runs on the engine thread, between decode steps, as mlx-lm's own prefill does.
"""

import copy
from typing import Any

import mlx.core as mx
from mlx_lm.generate import BatchGenerator
from mlx_lm.models.cache import make_prompt_cache

Cache = list[Any]


def prefill(generator: BatchGenerator, cache: Cache | None, tokens: list[int]) -> Cache:
    """`cache` (a fresh one when None) extended by `tokens`, in the generator's step size."""
    model = generator.model
    if cache is None:
        cache = make_prompt_cache(model, generator.max_kv_size)
    step = generator.prefill_step_size
    with mx.stream(generator.stream):
        for start in range(0, len(tokens), step):
            model(mx.array(tokens[start : start + step])[None], cache=cache)
            mx.eval([c.state for c in cache])
    return cache


def fork(cache: Cache, n: int) -> list[Cache]:
    """`n` caches holding the same state: the first is `cache` itself."""
    return [cache, *(copy.deepcopy(cache) for _ in range(n - 1))]
