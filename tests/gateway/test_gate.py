"""Gate and the gated event loop: an HttpFront's router never runs inside one of the loop's
callbacks, which the GIL alone does not ensure, and a busy loop does not starve it."""

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from modelkube_native import Gate, HttpFront

from modelkube_serving.gated_loop import gated_loop


def test_the_gate_goes_to_its_waiters_in_the_order_they_asked() -> None:
    gate = Gate()
    gate.acquire()
    order: list[int] = []

    def waiter(i: int) -> None:
        gate.acquire()
        order.append(i)
        gate.release()

    threads = []
    for i in range(5):
        thread = threading.Thread(target=waiter, args=(i,))
        thread.start()
        threads.append(thread)
        time.sleep(0.05)  # each waits before the next comes
    gate.release()
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2, 3, 4]
    gate.acquire()  # free again
    gate.release()


MIN_TURNS = 100


class BusyLoop:
    """A gated loop on its own thread whose callbacks move two counters one after the other,
    letting the GIL go between the two (as a thread switch may at any bytecode)."""

    def __init__(self, gate: Gate | None) -> None:
        self.counts = [0, 0]
        self.running = True
        self.turns = 0
        ready = threading.Event()

        def run() -> None:
            loop = gated_loop(gate) if gate is not None else asyncio.new_event_loop()
            self.loop = loop
            loop.call_soon(self.tick)
            ready.set()
            loop.run_forever()
            loop.close()

        self.thread = threading.Thread(target=run, name="busy-loop")
        self.thread.start()
        ready.wait(10)

    def tick(self) -> None:
        self.counts[0] += 1
        time.sleep(0.0002)  # the GIL goes to whoever waits for it
        self.counts[1] += 1
        self.turns += 1
        if self.running:
            self.loop.call_later(0.0005, self.tick)  # a wait in the selector between turns

    def stop(self) -> None:
        self.running = False
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def fronts() -> Iterator[list[HttpFront]]:
    made: list[HttpFront] = []
    yield made
    for front in made:
        front.close()


def torn_reads(gate: Gate | None, fronts: list[HttpFront], requests: int) -> tuple[int, int]:
    """How many of the router's reads found the loop's counters apart, and its turns meanwhile."""
    busy = BusyLoop(gate)
    torn = 0

    def router(_method: str, _path: str, _auth: str | None, _body: bytes) -> tuple[int, bytes]:
        nonlocal torn
        a, b = busy.counts
        torn += a != b
        return 200, b"{}"

    front = HttpFront("127.0.0.1", 0, router, gate)
    fronts.append(front)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{front.port}", timeout=10) as http:
            sent = 0
            # At least `requests`, and on until the loop turned MIN_TURNS times meanwhile: how
            # many turns fit in `requests` depends on the machine's speed and load.
            while sent < requests or (busy.turns <= MIN_TURNS and sent < 50 * requests):
                assert http.post("/", content=b"{}").status_code == 200
                sent += 1
    finally:
        busy.stop()
    return torn, busy.turns


def test_a_router_holding_the_gate_never_sees_a_callback_half_done(
    fronts: list[HttpFront],
) -> None:
    torn, turns = torn_reads(Gate(), fronts, 300)
    assert torn == 0
    assert turns > MIN_TURNS  # the loop kept turning: the router took the gate between its turns


def test_without_the_gate_the_router_does_see_them_half_done(fronts: list[HttpFront]) -> None:
    torn, _ = torn_reads(None, fronts, 300)
    assert torn > 0  # what the gate is for: this test would pass without it otherwise


def test_a_closed_gated_loop_lets_the_gate_go() -> None:
    gate = Gate()
    loop = gated_loop(gate)
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    acquired = threading.Event()

    def take() -> None:
        gate.acquire()
        acquired.set()
        gate.release()

    thread = threading.Thread(target=take)
    thread.start()
    assert acquired.wait(5)
    thread.join(5)
