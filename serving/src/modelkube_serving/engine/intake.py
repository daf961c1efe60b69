"""Completion requests on their way to the engine, so requests sent together start together.

A request spends a millisecond or more on the event loop before the engine sees it (its body
parsed and validated, the prompt rendered and tokenized, admission). When a burst arrives at an
idle engine, the first request reached the engine thread while the others were still on that
way, started a step alone, and the other fifteen of a 16-request burst then waited for that
whole step before theirs began (bench.serving at 16 clients: 142 ms for the first, 582 ms for
the rest, against one step of ~410 ms for all sixteen). The engine thread, taking its first
request after being idle, now waits a moment for the requests still on their way
(`EngineLoop`); a request alone is never held, since none is on its way behind it.

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
