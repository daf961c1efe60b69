"""The prefix cache: the runtime's `PromptCache` (on modelkube_native.PrefixIndex) against
mlx-lm's LRUPromptCache, which it replaced.

Both are whole prefix caches called the way the engine calls them, on the same prompts, timed
in alternating batches and summarised by medians:

- lookup: a new prompt that extends a cached one (the next turn of a conversation). Both hand
  out a deep copy of the cache, since generation writes into the cache it is given. The copy
  alone is reported too: on real caches it is megabytes, and it, not the index, then dominates
  both sides.
- insert: a new conversation's prompt (a shared system prompt, a new tail) into a full cache,
  so each insert evicts the least recently used entry on both sides.

The cached values are real `mlx_lm.models.cache.KVCache`s of one layer holding as many
positions as their prompt has tokens, with one-float16-wide keys and values: trimmable, so
LRUPromptCache takes its real paths (dropping stored prefixes on insert, deep copies on fetch),
yet small enough that building a thousand of them is quick.
"""

import copy
import functools
import gc
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import mlx.core as mx
from mlx_lm.models.cache import KVCache, LRUPromptCache

from modelkube_serving.engine.prompt_cache import PromptCache

MODEL = "bench"
VOCAB = 151_000
SYSTEM_PROMPTS = 8
ROUNDS = 21
BATCH = 40
NO_BYTE_LIMIT = 1 << 62

Cache = list[Any]


def kv_cache(length: int) -> Cache:
    cache = KVCache()
    positions = mx.zeros((1, 1, length, 1), dtype=mx.float16)
    cache.update_and_fetch(positions, positions)
    mx.eval(cache.keys, cache.values)
    return [cache]


class Prompts:
    """200-2000 token prompts: one of a few system prompts, then a conversation of its own."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._systems = [self._tokens(self._rng.randint(150, 1200)) for _ in range(SYSTEM_PROMPTS)]

    def _tokens(self, n: int) -> list[int]:
        return [self._rng.randrange(VOCAB) for _ in range(n)]

    def prompt(self) -> list[int]:
        system = self._rng.choice(self._systems)
        total = self._rng.randint(max(200, len(system) + 20), 2000)
        return system + self._tokens(total - len(system))

    def next_turn(self, prompt: list[int]) -> list[int]:
        return prompt + self._tokens(self._rng.randint(20, 200))


def _each(call: Callable[[Any], object], args: list[Any]) -> Callable[[], None]:
    def work() -> None:
        for arg in args:
            call(arg)

    return work


def _each_pair(
    call: Callable[[Any, Any], object], args: list[tuple[Any, Any]]
) -> Callable[[], None]:
    def work() -> None:
        for a, b in args:
            call(a, b)

    return work


def _per_op_us(work: Callable[[], None], ops: int) -> float:
    gc.disable()
    try:
        start = time.perf_counter()
        work()
        return (time.perf_counter() - start) / ops * 1e6
    finally:
        gc.enable()


def _interleaved(runs: dict[str, Callable[[], None]], times: dict[str, list[float]]) -> None:
    """One timed batch per side, the order flipping every round so neither always goes first."""
    names = list(runs)
    if len(times[names[0]]) % 2:
        names.reverse()
    for name in names:
        times[name].append(_per_op_us(runs[name], BATCH))


def _measure(entries: int, seed: int) -> dict[str, object]:
    prompts = Prompts(seed)
    theirs = LRUPromptCache(max_size=entries, max_bytes=NO_BYTE_LIMIT)
    ours = PromptCache(entries, NO_BYTE_LIMIT)
    stored = []
    for _ in range(entries):
        tokens = prompts.prompt()
        cache = kv_cache(len(tokens))
        theirs.insert_cache(MODEL, tokens, cache)
        ours.insert_cache(tokens, cache)
        stored.append(tokens)

    rng = random.Random(seed)
    rounds = [[prompts.next_turn(rng.choice(stored)) for _ in range(BATCH)] for _ in range(ROUNDS)]
    for query in rounds[0]:
        (a, rest_a), (b, rest_b) = (
            theirs.fetch_nearest_cache(MODEL, query),
            ours.fetch_nearest_cache(query),
        )
        assert b is not None and rest_a == rest_b and a[0].offset == b[0].offset, "they disagree"
    sample = theirs.fetch_nearest_cache(MODEL, rounds[0][0])[0]

    fetch = functools.partial(theirs.fetch_nearest_cache, MODEL)
    insert = functools.partial(theirs.insert_cache, MODEL)
    times: dict[str, list[float]] = {k: [] for k in ("mlx_l", "ours_l", "mlx_i", "ours_i", "cp")}
    for batch in rounds:
        lookups = {
            "mlx_l": _each(fetch, batch),
            "ours_l": _each(ours.fetch_nearest_cache, batch),
            "cp": _each(copy.deepcopy, [sample] * BATCH),
        }
        _interleaved(lookups, times)

    for _ in range(ROUNDS):
        fresh = [prompts.prompt() for _ in range(BATCH)]
        items = [(tokens, kv_cache(len(tokens))) for tokens in fresh]
        _interleaved(
            {"mlx_i": _each_pair(insert, items), "ours_i": _each_pair(ours.insert_cache, items)},
            times,
        )
    assert len(theirs) == len(ours) == entries

    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "entries": entries,
        "mlx_lookup_us": round(med["mlx_l"], 1),
        "ours_lookup_us": round(med["ours_l"], 1),
        "lookup_ratio": round(med["mlx_l"] / med["ours_l"], 2),
        "deepcopy_us": round(med["cp"], 1),
        "mlx_insert_us": round(med["mlx_i"], 1),
        "ours_insert_us": round(med["ours_i"], 1),
        "insert_ratio": round(med["mlx_i"] / med["ours_i"], 2),
    }


def run(sizes: tuple[int, ...] = (10, 100, 1000)) -> list[dict[str, object]]:
    """One row per cache size; a ratio above 1 means PrefixIndex is faster."""
    return [_measure(n, seed=n) for n in sizes]


def table(rows: list[dict[str, object]]) -> str:
    columns = list(rows[0])
    lines = ["  ".join(f"{c:>14}" for c in columns)]
    lines.extend("  ".join(f"{row[c]!s:>14}" for c in columns) for row in rows)
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run()))
