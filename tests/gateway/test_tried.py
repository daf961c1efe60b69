"""The front's `x-modelkube-tried` header as the app reads it: what the front writes is a try,
anything else is none."""

from hypothesis import given
from hypothesis import strategies as st

from modelkube_serving.gateway.forward import Tried


def test_what_the_front_writes_is_read_back() -> None:
    for reason in ("refused", "gone", "timeout", "draining"):
        assert Tried.parse(f"10.0.0.7:8000 {reason}") == Tried("10.0.0.7:8000", reason)
    assert Tried.parse(" [fd00::7]:8000 gone ") == Tried("[fd00::7]:8000", "gone")


def test_anything_else_is_no_try() -> None:
    for header in (None, "", "10.0.0.7:8000", "10.0.0.7:8000 bored", " refused", "a b c"):
        assert Tried.parse(header) is None


@given(st.text(max_size=60))
def test_no_header_breaks_the_reading(header: str) -> None:
    tried = Tried.parse(header)
    assert tried is None or (
        tried.pod and tried.reason in {"refused", "gone", "timeout", "draining"}
    )
