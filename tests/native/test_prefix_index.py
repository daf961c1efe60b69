"""The native prefix index from Python: lookups, LRU eviction, threads, bad input, and parity
with mlx-lm's LRUPromptCache where the two should agree."""

import random
import sys
import threading
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import pytest
from mlx_lm.models.cache import KVCache, LRUPromptCache
from modelkube_native import InvalidArgumentError, PrefixIndex

MODEL = "m"


@dataclass
class OpaqueLayer:
    """A cache layer LRUPromptCache cannot trim: it then serves only prefixes it holds, never
    a trimmed longer entry, and keeps prefixes of new entries."""

    ident: int
    nbytes: int

    def is_trimmable(self) -> bool:
        return False


def kv_cache(length: int) -> list[Any]:
    """A real one-layer KVCache holding `length` positions of tiny keys and values."""
    cache = KVCache()
    positions = mx.zeros((1, 1, length, 1), dtype=mx.float16)
    cache.update_and_fetch(positions, positions)
    mx.eval(cache.keys, cache.values)
    return [cache]


def test_finds_the_longest_stored_prefix() -> None:
    index = PrefixIndex(1 << 30)
    assert index.insert([1, 2, 3, 4], 10, 100) == []
    assert index.insert([1, 2, 5], 11, 50) == []
    assert index.insert([1, 2, 3, 4, 6, 7], 12, 10) == []
    assert index.longest_prefix([1, 2, 3, 4, 9]) == (10, 4)
    assert index.longest_prefix([1, 2, 3, 4, 6, 7]) == (12, 6)
    assert index.longest_prefix([1, 2, 5]) == (11, 3)
    assert index.longest_prefix([1, 2]) is None
    assert index.longest_prefix([]) is None
    assert (len(index), index.bytes) == (3, 160)
    assert index.remove(10)
    assert not index.remove(10)
    assert index.longest_prefix([1, 2, 3, 4, 9]) is None
    assert (len(index), index.bytes) == (2, 60)


def test_evicts_least_recently_used_and_reports_replaced_handles() -> None:
    index = PrefixIndex(300, max_entries=3)
    for handle in range(3):
        index.insert([handle, handle], handle, 100)
    assert index.longest_prefix([0, 0, 7]) == (0, 2)  # 0 is now the most recently used
    assert index.insert([3, 3], 3, 100) == [1]
    assert index.insert([3, 3], 4, 150) == [3, 2]  # replaced first, then evicted
    assert index.insert([5], 5, 10) == []
    assert index.insert([6], 6, 10) == [0]  # the entry budget
    assert (len(index), index.bytes) == (3, 170)


def test_bad_input_raises_clear_errors() -> None:
    index = PrefixIndex(100)
    for tokens in ([1, -1], [2**32], [2**80]):
        with pytest.raises(InvalidArgumentError, match=r"token ids must be in 0\.\.=4294967295"):
            index.insert(tokens, 1, 1)
        with pytest.raises(ValueError, match="at position"):
            index.longest_prefix(tokens)
    with pytest.raises(TypeError):
        index.longest_prefix([1, "2"])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match="exceeds the prefix cache budget"):
        index.insert([1], 1, 101)
    index.insert([1], 1, 1)
    with pytest.raises(InvalidArgumentError, match="already in the prefix index"):
        index.insert([2], 1, 1)
    with pytest.raises(InvalidArgumentError, match="max_entries"):
        PrefixIndex(100, max_entries=0)
    assert (len(index), index.bytes) == (1, 1)
    assert index.longest_prefix([2**32 - 1]) is None


def test_eight_threads_share_one_index() -> None:
    threads, per_thread, nbytes = 8, 400, 64
    index = PrefixIndex(nbytes * 500, max_entries=1000)
    systems = [[s] * 50 for s in range(1000, 1003)]

    def prompt(handle: int) -> list[int]:
        return [*systems[handle % 3], handle // 1000, handle % 1000]

    barrier = threading.Barrier(threads)
    evicted: list[list[int]] = [[] for _ in range(threads)]
    removed: list[list[int]] = [[] for _ in range(threads)]
    wrong: list[tuple[int, object]] = []

    def work(t: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            handle = t * 1000 + i
            evicted[t].extend(index.insert(prompt(handle), handle, nbytes))
            hit = index.longest_prefix([*prompt(handle), 7])
            if hit not in (None, (handle, len(prompt(handle)))):
                wrong.append((handle, hit))
            if i % 5 == 0 and index.remove(handle):
                removed[t].append(handle)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # with a GIL, threads then take turns between calls, not runs
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        sys.setswitchinterval(interval)

    assert wrong == []
    gone = [h for hs in evicted for h in hs]
    dropped = {h for hs in removed for h in hs}
    assert len(gone) == len(set(gone)), "a handle was evicted twice"
    assert not dropped & set(gone)
    inserted = {t * 1000 + i for t in range(threads) for i in range(per_thread)}
    present = inserted - set(gone) - dropped
    assert len(index) == len(present) <= 500
    assert index.bytes == nbytes * len(present)
    for handle in inserted:
        expected = (handle, len(prompt(handle))) if handle in present else None
        assert index.longest_prefix(prompt(handle)) == expected


def mlx_lookup(cache: LRUPromptCache, tokens: list[int]) -> tuple[Any, int] | None:
    """(the cache LRUPromptCache hands out, how many tokens of `tokens` it covers), or None."""
    found, rest = cache.fetch_nearest_cache(MODEL, tokens)
    return None if found is None else (found, len(tokens) - len(rest))


def test_agrees_with_mlx_lm_on_untrimmable_caches() -> None:
    """With caches it cannot trim, LRUPromptCache serves the longest stored prefix, as we do,
    except that it overlooks one-token entries (it keeps a prefix only when `last_index > 0`):
    entries here are two tokens or more."""
    rng = random.Random(3)
    reference = LRUPromptCache(max_size=10_000)
    index = PrefixIndex(1 << 40)
    stored: list[list[int]] = []
    for handle in range(300):
        tokens = [rng.randrange(4) for _ in range(rng.randint(2, 9))]
        reference.insert_cache(MODEL, tokens, [OpaqueLayer(handle, 10)])
        index.insert(tokens, handle, 10)
        stored.append(tokens)
    queries = [[rng.randrange(4) for _ in range(rng.randint(0, 12))] for _ in range(500)]
    queries += [[*s, *[rng.randrange(5) for _ in range(rng.randint(0, 3))]] for s in stored]
    hits = 0
    for tokens in queries:
        ours = index.longest_prefix(tokens)
        theirs = mlx_lookup(reference, tokens)
        if theirs is None:
            assert ours is None, tokens
            continue
        hits += 1
        assert ours == (theirs[0][0].ident, theirs[1]), tokens
    assert hits > len(queries) // 2
    assert len(index) == len(reference)


def test_agrees_with_mlx_lm_on_kv_caches_for_prompts_extending_an_entry() -> None:
    """Real KVCaches are trimmable, so LRUPromptCache drops the stored prefixes of a new entry
    and may serve a trimmed longer entry; for a prompt that extends an entry and continues
    where no stored prompt goes, both answer that entry."""
    rng = random.Random(5)
    reference = LRUPromptCache(max_size=10_000)
    index = PrefixIndex(1 << 40)
    systems = [[rng.randrange(100) for _ in range(rng.randint(20, 60))] for _ in range(3)]
    stored: list[list[int]] = []
    for handle in range(60):
        # A distinct first token after the system prompt: no entry is a prefix of another.
        tokens = [*rng.choice(systems), 1000 + handle, *rng.sample(range(100), 5)]
        reference.insert_cache(MODEL, tokens, kv_cache(len(tokens)))
        index.insert(tokens, handle, 1)
        stored.append(tokens)
    for handle, tokens in enumerate(stored):
        query = [*tokens, *[2000 + rng.randrange(100) for _ in range(rng.randint(1, 30))]]
        theirs = mlx_lookup(reference, query)
        assert theirs is not None
        assert theirs[0][0].offset == theirs[1] == len(tokens)
        assert index.longest_prefix(query) == (handle, len(tokens))


def test_mlx_lm_serves_a_trimmed_longer_entry_where_we_find_no_prefix() -> None:
    """The one place the semantics part: a prompt sharing a stored prompt's beginning but not
    all of it. mlx-lm deep-copies that entry and trims it to the shared part; a prefix index
    has no entry there (the runtime could add one: a trimmed copy is a prefix cache too)."""
    reference = LRUPromptCache()
    index = PrefixIndex(1 << 40)
    stored = list(range(10, 30))
    reference.insert_cache(MODEL, stored, kv_cache(len(stored)))
    index.insert(stored, 1, 1)
    query = [*stored[:12], 99, 98]
    theirs = mlx_lookup(reference, query)
    assert theirs is not None
    assert theirs[0][0].offset == theirs[1] == 12
    assert index.longest_prefix(query) is None


def test_evicts_what_mlx_lm_evicts_when_only_inserting() -> None:
    """LRUPromptCache orders by insertion only (a fetch does not refresh an entry); with
    inserts alone, both budgets evict the same entries."""
    rng = random.Random(11)
    reference = LRUPromptCache(max_size=20, max_bytes=2_000)
    index = PrefixIndex(2_000, max_entries=20)
    prompts: dict[int, list[int]] = {}
    gone: set[int] = set()
    for handle in range(400):
        tokens = [rng.randrange(6) for _ in range(rng.randint(2, 6))]
        nbytes = rng.randint(1, 300)
        reference.insert_cache(MODEL, tokens, [OpaqueLayer(handle, nbytes)])
        gone.update(index.insert(tokens, handle, nbytes))
        prompts[handle] = tokens
    assert len(index) == len(reference)
    assert index.bytes == reference.nbytes
    for handle, tokens in prompts.items():
        found, rest = reference.fetch_nearest_cache(MODEL, tokens)
        theirs = found is not None and not rest and found[0].ident == handle
        assert theirs == (handle not in gone), handle
