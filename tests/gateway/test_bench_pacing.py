"""bench.gateway's paced users: the pauses depend on the session and turn alone, so both
modes wait the same ones; a first turn goes at once, and no pause runs away. And its flags:
bad values are refused in one line, as argparse does."""

import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.gateway.__main__ import _args
from bench.gateway.sessions import reader


def test_both_modes_draw_the_same_pauses_around_the_mean() -> None:
    think, again = reader(2.0), reader(2.0)
    pauses = [think(s, t) for s in range(200) for t in range(2, 5)]
    assert pauses == [again(s, t) for s in range(200) for t in range(2, 5)]
    assert all(0 <= p <= 6.0 for p in pauses)
    assert 1.5 < statistics.mean(pauses) < 2.2  # exponential, mean 2, the tail capped at 3x
    assert len(set(pauses)) > 500
    assert [think(s, 1) for s in range(10)] == [0.0] * 10


@settings(max_examples=50, deadline=None)
@given(threads=st.text(max_size=8))
def test_the_bench_refuses_engine_threads_that_are_not_a_positive_number(threads: str) -> None:
    argv = ["--engine", "llamacpp", "--model", "builtin://smollm2-135m-instruct"]
    try:
        valid = int(threads) >= 1
    except ValueError:
        valid = False
    if valid:
        assert _args([*argv, "--engine-threads", threads]).engine_threads == int(threads)
    else:
        with pytest.raises(SystemExit) as refused:
            _args([*argv, "--engine-threads", threads])
        assert refused.value.code == 2


def test_the_bench_refuses_the_llama_engine_on_the_random_weight_default() -> None:
    with pytest.raises(SystemExit) as refused:
        _args(["--engine", "llamacpp"])
    assert refused.value.code == 2
