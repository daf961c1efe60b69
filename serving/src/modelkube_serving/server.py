"""uvicorn, taught to drain: on SIGTERM readiness fails first, then in-flight work finishes."""

import asyncio
import logging
import signal
import sys
from types import FrameType

import uvicorn

from modelkube_serving.state import ServingState

log = logging.getLogger("modelkube.serve")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, grace_period_s: float) -> None:
        super().__init__(config)
        self.grace_period_s = grace_period_s
        self.exit_code = 0
        self.runtime: ServingState | None = None
        self._drain_task: asyncio.Task[None] | None = None

    def fail(self, message: str) -> None:
        """Stop with one readable line and a non-zero exit, e.g. when the model cannot load."""
        print(f"modelkube serve: error: {message}", file=sys.stderr)
        self.exit_code = 1
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self.runtime is None or self._drain_task is not None:
            super().handle_exit(sig, frame)
            return
        # Not recorded in _captured_signals: uvicorn would re-raise it and exit -15, not 0.
        self.runtime.draining = True
        log.info("SIGTERM: draining (readiness now fails, new requests get 503)")
        self._drain_task = asyncio.get_event_loop().create_task(self._drain(self.runtime))

    async def _drain(self, runtime: ServingState) -> None:
        try:
            await asyncio.wait_for(runtime.admission.wait_idle(), self.grace_period_s)
        except TimeoutError:
            log.warning("grace period over with %d requests in flight", runtime.admission.running)
        self.should_exit = True
