"""A streamed answer that frees what it holds however the stream ends."""

from collections.abc import AsyncIterator, Callable

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class ClosingStreamingResponse(StreamingResponse):
    """An SSE response that calls `on_close` when it ends: done, failed, or the client gone
    before the first chunk. In that last case the body's generator never started, so its own
    `finally` (which frees the admission slot) never runs: this one does. `on_close` must be
    harmless to call after the generator's own cleanup."""

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream", headers=SSE_HEADERS)
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()  # a started generator runs its `finally` now, not at GC
            self.on_close()
