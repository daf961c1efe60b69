"""Requests waiting for llama.cpp sequences, in arrival order.

Each choice of a request takes a llama.cpp sequence of its own, and admission counts requests,
not choices: a request of `n` choices can find fewer than `n` free. It then waits here until
enough running choices end (every one does, at its max_tokens at the latest), and so does every
request that arrives after it, so a large `n` is not overtaken forever by single choices. The
variants' loops share one engine and so one backlog.
"""

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from modelkube_native import RenderSpec

from modelkube_serving.engine.batch_loop import Outbox
from modelkube_serving.engine.types import EventSink, GenerationRequest

# Starts a request on its variant's loop; what fails to start says so in the outbox.
Start = Callable[[GenerationRequest, RenderSpec, EventSink, Outbox], None]


@dataclass(frozen=True)
class Waiting:
    request: GenerationRequest
    render: RenderSpec
    sink: EventSink
    start: Start
    owner: object  # the loop it waits for, to count and end its own


class Backlog:
    def __init__(self, free_sequences: Callable[[], int]) -> None:
        self._free = free_sequences
        self._queue: deque[Waiting] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def fits(self, n: int) -> bool:
        """Whether a request of `n` choices may start now: none waits before it, and there are
        sequences for all its choices."""
        return not self._queue and self._free() >= n

    def wait(self, waiting: Waiting) -> None:
        self._queue.append(waiting)

    def start_ready(self, outbox: Outbox) -> None:
        """Start the waiting requests that fit now, first come first."""
        while self._queue and self._free() >= self._queue[0].request.n:
            head = self._queue.popleft()
            head.start(head.request, head.render, head.sink, outbox)

    def remove(self, owner: object, request_id: str) -> Waiting | None:
        """Take `owner`'s waiting request out of the line (None when it does not wait)."""
        for waiting in self._queue:
            if waiting.owner is owner and waiting.request.request_id == request_id:
                self._queue.remove(waiting)
                return waiting
        return None

    def remove_all(self, owner: object) -> list[Waiting]:
        mine = [w for w in self._queue if w.owner is owner]
        self._queue = deque(w for w in self._queue if w.owner is not owner)
        return mine

    def of(self, owner: object) -> list[str]:
        """The ids of `owner`'s waiting requests."""
        return [w.request.request_id for w in self._queue if w.owner is owner]
