"""Dependencies shared by the routers.

They are `async def` on purpose: FastAPI runs plain `def` dependencies in a thread pool,
two thread hops per request for a few microseconds of work.
"""

import asyncio
import hashlib
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request
from starlette.types import Receive

from modelkube_serving.auth import bearer_token, key_accepted
from modelkube_serving.errors import Unauthorized, Unavailable
from modelkube_serving.services.fine_tuning import FineTuningService
from modelkube_serving.state import ProxyState, RuntimeState, ServingState

T = TypeVar("T")


def serving(request: Request) -> ServingState:
    state: ServingState = request.app.state.runtime
    return state


def runtime(request: Request) -> RuntimeState:
    """The local model's state; only its routes call this."""
    state: RuntimeState = request.app.state.runtime
    return state


def proxy_state(request: Request) -> ProxyState:
    """Proxy mode's state; only its routes call this."""
    state: ProxyState = request.app.state.runtime
    return state


def fine_tuning(request: Request) -> FineTuningService:
    service: FineTuningService = request.app.state.fine_tuning
    return service


async def require_api_key(request: Request) -> None:
    keys = serving(request).api_keys
    if keys and not key_accepted(bearer_token(request.headers.get("authorization")), keys):
        raise Unauthorized(
            "Incorrect or missing API key. Send it as 'Authorization: Bearer <key>'."
        )


def client_key(request: Request) -> str:
    """Whose request this is, for fair queueing and rate limits: a digest of its API key, so
    the key itself is never kept. Without keys every client shares one."""
    token = bearer_token(request.headers.get("authorization"))
    return hashlib.sha256(token).hexdigest()[:16] if token and serving(request).api_keys else ""


async def require_serving(request: Request) -> None:
    state = serving(request)
    if state.draining:
        raise Unavailable("The server is shutting down; retry on another replica.")
    if isinstance(state, RuntimeState) and not state.engine.ready:
        raise Unavailable("The model is still loading; retry shortly.")


async def until_disconnect(request: Request, work: Awaitable[T], gone: T) -> T:
    """Run `work`, cancelling it (and so the generation, the upstream call or the gateway's
    hold) as soon as the client goes away; then `gone` is returned, which nobody reads.

    The body has been read, so the next ASGI message is the disconnect: the server delivers
    it when the connection drops, and waiting on it frees the work at once (a 0.2 s poll of
    `is_disconnected` did it up to 0.2 s late, and woke every request five times a second)."""
    task = asyncio.ensure_future(work)
    left = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait({task, left}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Cancelling a pending receive loses no message (Starlette's `is_disconnected`
        # relies on that too); the work goes with a handler that is cancelled itself.
        left.cancel()
        finished = task.done()
        if not finished:
            task.cancel()
    if finished:
        return task.result()
    await asyncio.gather(task, return_exceptions=True)
    return gone


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
