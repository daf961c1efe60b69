"""The routing rule: consistent hashing with bounded loads, as plain examples and as
properties over generated endpoint sets, loads and keys."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelkube_serving.gateway.routing import Choice, choose, load_bound, request_key

ENDPOINTS = st.lists(
    st.from_regex(r"10\.0\.[0-9]{1,3}\.[0-9]{1,3}:8000", fullmatch=True),
    min_size=1,
    max_size=8,
    unique=True,
)
KEYS = st.binary(min_size=0, max_size=64)
FACTORS = st.sampled_from([1.0, 1.1, 1.25, 1.5, 2.0])


@st.composite
def loaded(draw: st.DrawFn) -> dict[str, int]:
    endpoints = draw(ENDPOINTS)
    return {e: draw(st.integers(min_value=0, max_value=50)) for e in endpoints}


@given(loaded(), KEYS, FACTORS)
def test_never_picks_an_endpoint_over_the_bound_when_one_fits(
    loads: dict[str, int], key: bytes, factor: float
) -> None:
    bound = load_bound(loads, factor)
    chosen = choose(key, loads, factor).endpoint
    assert any(load + 1 <= bound for load in loads.values()), "the least loaded always fits"
    assert loads[chosen] + 1 <= bound


def test_at_a_light_load_a_conversation_stays_beside_one_other_request() -> None:
    loads = {f"10.0.0.{i}:8000": 0 for i in range(4)}
    home = choose(b"conversation", loads, 1.25)
    # Its pod serves one request, another pod one too: the share alone would be
    # ceil(1.25 * 3 / 4) = 1, a spill; a pod may always batch a second sequence.
    others = [e for e in loads if e != home.endpoint]
    assert choose(b"conversation", {**loads, home.endpoint: 1, others[0]: 1}, 1.25) == home
    assert load_bound({**loads, home.endpoint: 1, others[0]: 1}, 1.25) == 2
    spilled = choose(b"conversation", {**loads, home.endpoint: 2}, 1.25)
    assert not spilled.affinity  # two already: over the bound of 2, as before


@given(loaded(), KEYS, FACTORS)
def test_the_home_takes_the_request_whenever_it_fits_under_the_bound(
    loads: dict[str, int], key: bytes, factor: float
) -> None:
    home = choose(key, dict.fromkeys(loads, 0), factor).endpoint  # the home ignores loads
    choice = choose(key, loads, factor)
    assert choice.affinity == (loads[home] + 1 <= load_bound(loads, factor))
    assert choice.affinity == (choice.endpoint == home)


@given(loaded(), KEYS, FACTORS)
def test_a_request_its_home_cannot_take_goes_to_a_least_loaded_endpoint(
    loads: dict[str, int], key: bytes, factor: float
) -> None:
    choice = choose(key, loads, factor)
    if not choice.affinity:
        assert loads[choice.endpoint] == min(loads.values())


@given(ENDPOINTS, KEYS, st.data())
def test_a_spill_among_equally_loaded_endpoints_goes_to_the_same_one_every_time(
    endpoints: list[str], key: bytes, data: st.DataObject
) -> None:
    home = choose(key, dict.fromkeys(endpoints, 0), 1.25).endpoint
    busy = {**dict.fromkeys(endpoints, 1), home: 9}
    if len(endpoints) < 2:
        return
    first = choose(key, busy, 1.25)
    shuffled = dict(data.draw(st.permutations(list(busy.items()))))
    assert not first.affinity and choose(key, shuffled, 1.25) == first


@given(ENDPOINTS, st.integers(min_value=0, max_value=20), KEYS, FACTORS)
def test_the_same_key_reaches_the_same_endpoint_under_equal_loads(
    endpoints: list[str], load: int, key: bytes, factor: float
) -> None:
    loads = {e: load for e in endpoints}
    first = choose(key, loads, factor)
    assert first.affinity
    assert choose(key, dict(reversed(list(loads.items()))), factor) == first


@given(ENDPOINTS, KEYS, st.data())
def test_an_unrelated_endpoint_leaving_moves_no_key(
    endpoints: list[str], key: bytes, data: st.DataObject
) -> None:
    chosen = choose(key, dict.fromkeys(endpoints, 0), 1.25).endpoint
    others = [e for e in endpoints if e != chosen]
    if not others:
        return
    gone = data.draw(st.sampled_from(others))
    remaining = dict.fromkeys((e for e in endpoints if e != gone), 0)
    assert choose(key, remaining, 1.25).endpoint == chosen


def test_a_busy_owner_spills_to_another_endpoint_and_takes_the_key_back_when_free() -> None:
    loads = dict.fromkeys(["a:1", "b:1", "c:1", "d:1"], 0)
    home = choose(b"conversation", loads, 1.25)
    assert home.affinity
    busy = {**loads, home.endpoint: 3}  # bound: ceil(1.25 * 4 / 4) = 2
    spilled = choose(b"conversation", busy, 1.25)
    assert spilled.endpoint != home.endpoint and not spilled.affinity
    one_free = {**dict.fromkeys(loads, 1), home.endpoint: 4, spilled.endpoint: 1}
    free = next(e for e in loads if e not in (home.endpoint, spilled.endpoint))
    one_free[free] = 0  # bound: ceil(1.25 * 8 / 4) = 3; not the ring's next, the idle one
    assert choose(b"conversation", one_free, 1.25) == Choice(free, affinity=False)
    assert choose(b"conversation", dict.fromkeys(loads, 1), 1.25) == home  # bound 2


def test_keys_spread_over_every_endpoint() -> None:
    loads = dict.fromkeys([f"10.0.0.{i}:8000" for i in range(4)], 0)
    chosen = {choose(f"session {i}".encode(), loads, 1.25).endpoint for i in range(64)}
    assert chosen == set(loads)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="no endpoints"):
        choose(b"k", {}, 1.25)
    with pytest.raises(ValueError, match="at least 1"):
        choose(b"k", {"a": 0}, 0.5)


def test_the_key_is_the_adapter_and_the_first_user_message_not_the_system_prompt() -> None:
    def chat(system: str, user: str) -> dict[str, object]:
        return {
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
                {"role": "assistant", "content": "later turns do not change the key"},
            ]
        }

    assert request_key(chat("shared", "hello"), "") == request_key(chat("other", "hello"), "")
    assert request_key(chat("shared", "hello"), "") != request_key(chat("shared", "bye"), "")
    assert request_key(chat("s", "hello"), "a1") != request_key(chat("s", "hello"), "a2")
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]}
    assert request_key(parts, "") == request_key(chat("x", "hello"), "")
    assert request_key({"prompt": ["once upon"]}, "") == request_key({"prompt": "once upon"}, "")
    assert request_key({"prompt": "x" * 500}, "") == request_key({"prompt": "x" * 400}, "")
    assert request_key({"messages": "not a list"}, "") == request_key({}, "")
