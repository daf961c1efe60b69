"""bench.gateway's paced users: the pauses depend on the session and turn alone, so both
modes wait the same ones; a first turn goes at once, and no pause runs away."""

import statistics

from bench.gateway.sessions import reader


def test_both_modes_draw_the_same_pauses_around_the_mean() -> None:
    think, again = reader(2.0), reader(2.0)
    pauses = [think(s, t) for s in range(200) for t in range(2, 5)]
    assert pauses == [again(s, t) for s in range(200) for t in range(2, 5)]
    assert all(0 <= p <= 6.0 for p in pauses)
    assert 1.5 < statistics.mean(pauses) < 2.2  # exponential, mean 2, the tail capped at 3x
    assert len(set(pauses)) > 500
    assert [think(s, 1) for s in range(10)] == [0.0] * 10
