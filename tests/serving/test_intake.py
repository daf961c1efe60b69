"""Requests sent together start in one engine step (engine/intake.py): an idle engine's first
step waits for the requests still on their way through the HTTP layer, up to a bound, and a
request alone is not held. The count of requests on their way returns to zero whatever
becomes of them."""

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from modelkube_serving.engine import engine_loop
from modelkube_serving.engine.engine_loop import EngineLoop
from modelkube_serving.engine.intake import Arrival, Intake
from tests.serving.conftest import MODEL, StartRuntime
from tests.waiting import wait_until


class StepRecorder:
    """A variant's loop that records how many requests each step ran; every request ends
    after its first step. What is tested is the engine loop's choice of when to step."""

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.steps: list[int] = []

    @property
    def running(self) -> list[Any]:
        return self.rows

    def step(self) -> None:
        self.steps.append(len(self.rows))
        self.rows.clear()

    def admit(self, request: Any, render: Any, sink: Any, outbox: Any) -> None:
        self.rows.append(request)

    def cancel(self, request_id: str, outbox: Any) -> bool:
        return False

    def close(self) -> None:
        pass


class Engine:
    """EngineLoop on a thread of its own, as ThreadedEngine runs it."""

    def __init__(self, intake: Intake) -> None:
        self.recorder = StepRecorder()
        self.commands: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        loop = EngineLoop(
            self.recorder,
            lambda name, path: self.recorder,
            lambda items: None,
            lambda: intake.on_the_way,
        )
        self.thread = threading.Thread(target=loop.run, args=(self.commands,))
        self.thread.start()

    def submit(self, arrival: Arrival | None = None) -> None:
        self.commands.put(("submit", SimpleNamespace(adapter=""), None, None))
        if arrival is not None:
            arrival.handed_over()

    def stop(self) -> None:
        self.commands.put(("stop",))
        self.thread.join(10)
        assert not self.thread.is_alive()


def arrivals(stack: contextlib.ExitStack, intake: Intake, n: int) -> list[Arrival]:
    return [stack.enter_context(intake.arriving()) for _ in range(n)]


StartEngine = Callable[[float], tuple[Intake, Engine]]


@pytest.fixture
def start_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[StartEngine]:
    """An engine loop whose gather waits up to the given seconds; stopped after the test."""
    started: list[Engine] = []

    def start(gather_s: float) -> tuple[Intake, Engine]:
        monkeypatch.setattr(engine_loop, "GATHER_S", gather_s)
        intake = Intake()
        started.append(Engine(intake))
        return intake, started[-1]

    yield start
    for engine in started:
        if engine.thread.is_alive():
            engine.stop()


def test_requests_on_their_way_start_in_the_first_step(start_engine: StartEngine) -> None:
    intake, engine = start_engine(30.0)  # never the bound here
    with contextlib.ExitStack() as stack:
        first, *others = arrivals(stack, intake, 4)
        engine.submit(first)
        time.sleep(0.05)  # the others still parsed and rendered on the event loop
        for arrival in others:
            engine.submit(arrival)
        wait_until(lambda: engine.recorder.steps, 10, "a step")
    assert engine.recorder.steps[0] == 4
    assert intake.on_the_way == 0


def test_a_request_alone_is_not_held(start_engine: StartEngine) -> None:
    intake, engine = start_engine(30.0)
    with intake.arriving() as arrival:
        started = time.monotonic()
        engine.submit(arrival)
        wait_until(lambda: engine.recorder.steps, 10, "a step")
    assert engine.recorder.steps == [1]
    assert time.monotonic() - started < 10  # it would have waited 30 s


def test_the_wait_ends_at_its_bound_when_a_request_never_comes(
    start_engine: StartEngine,
) -> None:
    intake, engine = start_engine(0.2)
    with contextlib.ExitStack() as stack:
        first, _stuck = arrivals(stack, intake, 2)
        engine.submit(first)
        wait_until(lambda: engine.recorder.steps, 10, "a step after the bound")
        assert engine.recorder.steps == [1]


def test_a_stop_while_waiting_ends_the_loop(start_engine: StartEngine) -> None:
    intake, engine = start_engine(30.0)
    with contextlib.ExitStack() as stack:
        first, _coming = arrivals(stack, intake, 2)
        engine.submit(first)
        engine.stop()  # within its join timeout, far under GATHER_S
    assert engine.recorder.steps == []


def test_an_arrival_leaves_the_count_once() -> None:
    intake = Intake()
    with intake.arriving() as arrival:
        assert intake.on_the_way == 1
        arrival.handed_over()
        arrival.handed_over()
        assert intake.on_the_way == 0
    assert intake.on_the_way == 0


@pytest.mark.parametrize("engine", ["mlx", "llamacpp"])
def test_no_request_stays_counted_on_its_way_whatever_becomes_of_it(
    engine: str, start_runtime: StartRuntime
) -> None:
    extra = ("--engine", "llamacpp", "--engine-threads", "1") if engine == "llamacpp" else ()
    # One request at a time, so the rest queue for admission.
    runtime = start_runtime(*extra, "--max-concurrent-requests", "1")
    ok = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}

    async def traffic() -> list[int]:
        async with httpx.AsyncClient(base_url=runtime.url, timeout=60) as client:
            sent = [
                *(client.post("/v1/chat/completions", json=ok) for _ in range(6)),
                client.post("/v1/chat/completions", json={**ok, "max_tokens": -1}),
                client.post("/v1/chat/completions", json={**ok, "model": "nope"}),
                client.post("/v1/completions", content=b"{not json"),
                client.post("/v1/completions", json={"model": MODEL, "prompt": "x", "n": 0}),
            ]
            codes = [r.status_code for r in await asyncio.gather(*sent)]
            # A stream is handed over when it reaches the engine, not when it ends; then the
            # client leaves it after its first chunk.
            long = {**ok, "stream": True, "max_tokens": 200, "ignore_eos": True}
            async with client.stream("POST", "/v1/chat/completions", json=long) as stream:
                async for _ in stream.aiter_bytes():
                    codes.append(intake.on_the_way)
                    break
            return codes

    intake = runtime.state.engine.intake  # type: ignore[attr-defined]

    *codes, while_streaming = asyncio.run(traffic())
    assert codes[:6] == [200] * 6 and all(400 <= c < 500 for c in codes[6:]), codes
    assert while_streaming == 0
    wait_until(lambda: intake.on_the_way == 0, 10, f"{intake.on_the_way} still on their way")
