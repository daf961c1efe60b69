"""The prefix cache on the native index answers as mlx-lm's LRUPromptCache does."""

import random
from typing import Any

import mlx.core as mx
from mlx_lm.models.cache import KVCache, LRUPromptCache

from modelkube_serving.engine.prompt_cache import PromptCache


def kv_cache(length: int) -> list[Any]:
    cache = KVCache()
    positions = mx.zeros((1, 1, length, 1), dtype=mx.float16)
    cache.update_and_fetch(positions, positions)
    return [cache]


def test_fetches_agree_with_mlx_lm_on_random_conversations() -> None:
    rng = random.Random(1)
    ours, theirs = PromptCache(1000, 1 << 40), LRUPromptCache(max_size=1000)
    stored: list[list[int]] = []
    hits = misses = 0
    for step in range(400):
        if stored and step % 2:
            base = rng.choice(stored)
            cut = rng.randrange(2, len(base) + 1)
            query = base[:cut] + [rng.randrange(50) for _ in range(rng.randrange(0, 4))]
        else:
            query = [rng.randrange(50) for _ in range(rng.randrange(2, 30))]
        (a, rest_a), (b, rest_b) = (
            theirs.fetch_nearest_cache("m", query),
            ours.fetch_nearest_cache(query),
        )
        assert rest_a == rest_b, query
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert a[0].offset == b[0].offset  # the same tokens reused, trimmed alike
            hits += 1
        else:
            misses += 1
        if step % 3 == 0:
            tokens = query + [rng.randrange(50) for _ in range(rng.randrange(1, 10))]
            theirs.insert_cache("m", tokens, kv_cache(len(tokens)))
            ours.insert_cache(tokens, kv_cache(len(tokens)))
            stored.append(tokens)
    assert len(ours) == len(theirs)
    assert hits > 100
    assert misses > 10


def test_a_hit_is_a_copy_and_the_least_recently_used_goes_first() -> None:
    cache = PromptCache(2, 1 << 40)
    cache.insert_cache([1, 2, 3], kv_cache(3))
    cache.insert_cache([4, 5, 6], kv_cache(3))
    hit, rest = cache.fetch_nearest_cache([1, 2, 3, 9])
    assert hit is not None and rest == [9]
    hit[0].update_and_fetch(*(2 * [mx.zeros((1, 1, 1, 1), dtype=mx.float16)]))
    again, _ = cache.fetch_nearest_cache([1, 2, 3, 9])
    assert again is not None and again[0].offset == 3  # the stored cache did not grow
    cache.insert_cache([7, 8, 9], kv_cache(3))  # evicts [4, 5, 6]: [1, 2, 3] was just used
    assert cache.fetch_nearest_cache([4, 5, 6, 1]) == (None, [4, 5, 6, 1])
    assert cache.fetch_nearest_cache([1, 2, 3, 1])[1] == [1]


def test_a_cache_beyond_the_byte_budget_is_not_kept() -> None:
    cache = PromptCache(10, 16)
    cache.insert_cache([1, 2, 3], kv_cache(64))
    assert len(cache) == 0
    assert cache.fetch_nearest_cache([1, 2, 3]) == (None, [1, 2, 3])
