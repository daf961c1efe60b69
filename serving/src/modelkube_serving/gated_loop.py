"""An asyncio event loop that holds a native `Gate` except while it waits for I/O.

The gateway's Rust front (issue 19) asks its router on a tokio thread, holding the gate; this
loop holds it while it runs callbacks. So the router never runs in the middle of one of the
loop's callbacks (the GIL alone would let it: a thread switch may come between any two
bytecodes), and it does not wait for an idle loop to wake. Callables the router runs must not
touch the loop itself (no futures resolved, nothing scheduled) except by
`call_soon_threadsafe`. The gate is let go when the loop closes.
"""

import asyncio
import selectors

from modelkube_native import Gate


class _GatedSelector(selectors.DefaultSelector):
    def __init__(self, gate: Gate) -> None:
        super().__init__()
        self._gate = gate

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self._gate.release()
        try:
            ready: list[tuple[selectors.SelectorKey, int]] = super().select(timeout)
            return ready
        finally:
            self._gate.acquire()

    def close(self) -> None:
        super().close()
        self._gate.release()


def gated_loop(gate: Gate) -> asyncio.AbstractEventLoop:
    """A new event loop holding `gate`; create it on the thread that will run it."""
    gate.acquire()
    return asyncio.SelectorEventLoop(_GatedSelector(gate))
