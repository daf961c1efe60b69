"""Completion requests on their way to the engine, so requests sent together start together.

A request spends a millisecond or more on the event loop before the engine sees it (its body
parsed and validated, the prompt rendered and tokenized, admission). When a burst arrived at an
idle engine, the first few requests reached the engine thread while the others were still on
that way and started a step by themselves, and the rest waited for that whole step before
theirs began (bench.serving at 16 clients, in 3 of 6 rounds: 2-3 requests at 90-143 ms, the
other 13-14 at 425-582 ms; ~390-480 ms for all sixteen when they shared one step). The engine
thread, taking its first request after being idle, now waits a moment for the requests still
on their way (`EngineLoop`); a request alone is never held, since none is on its way behind it.

The count is kept on the event loop: a request arrives (`arriving`, from the HTTP layer) and
leaves the way once, when it is handed to the engine, when it must queue for admission (it may
wait long), or when its handler ends without either. The engine thread only reads it.
"""

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar


class Arrival:
    """One request on its way; `handed_over` takes it off the count, once."""

    __slots__ = ("_intake", "_on_the_way")

    def __init__(self, intake: "Intake") -> None:
        self._intake = intake
        self._on_the_way = True

    def handed_over(self) -> None:
        if self._on_the_way:
            self._on_the_way = False
            self._intake._count -= 1


class Intake:
    def __init__(self) -> None:
        self._count = 0

    @property
    def on_the_way(self) -> int:
        """Requests arrived and not yet with the engine (read from the engine thread)."""
        return self._count

    @contextlib.contextmanager
    def arriving(self) -> Iterator[Arrival]:
        """One request's way through the HTTP layer: the handler's code under it that reaches
        `hand_over` hands it over there; otherwise it leaves the count when the block ends."""
        arrival = Arrival(self)
        self._count += 1
        token = _current.set(arrival)
        try:
            yield arrival
        finally:
            _current.reset(token)
            arrival.handed_over()


_current: ContextVar[Arrival | None] = ContextVar("modelkube_arrival", default=None)


def hand_over() -> None:
    """The request this task serves is no longer on its way to the engine (a no-op for work that
    did not come through `Intake.arriving`: a program's own calls, tests)."""
    arrival = _current.get()
    if arrival is not None:
        arrival.handed_over()
