"""The engine thread's outer loop keeps serving when one request's submit fails unexpectedly:
that request, and only it, gets its error (before, the error went to the wrong argument of the
submit and the request waited forever)."""

import queue
from types import SimpleNamespace
from typing import Any

from modelkube_serving.engine.engine_loop import EngineLoop
from modelkube_serving.engine.types import Finished
from tests.serving.test_intake import StepRecorder


class RefusingRecorder(StepRecorder):
    """Admits every request but one whose prompt is the poison."""

    def admit(self, request: Any, render: Any, sink: Any, outbox: Any) -> None:
        if request.prompt_tokens == [0]:
            raise OverflowError("can't convert negative int to unsigned")
        super().admit(request, render, sink, outbox)


def test_a_submit_that_raises_fails_its_own_request_and_the_loop_serves_on() -> None:
    delivered: list[tuple[Any, Any]] = []
    recorder = RefusingRecorder()
    loop = EngineLoop(recorder, lambda name, path: recorder, delivered.extend)
    commands: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()

    def request(tokens: list[int]) -> SimpleNamespace:
        return SimpleNamespace(adapter="", prompt_tokens=tokens)

    poisoned, fine = request([0]), request([1, 2])
    commands.put(("submit", poisoned, "render of the poisoned", "sink of the poisoned"))
    commands.put(("submit", fine, "render of the fine", "sink of the fine"))
    assert loop.apply(commands, None)

    [(sink, event)] = delivered
    assert sink == "sink of the poisoned"
    assert isinstance(event, Finished) and event.reason == "error"
    assert "can't convert negative int" in (event.error or "")
    assert recorder.rows == [fine]
