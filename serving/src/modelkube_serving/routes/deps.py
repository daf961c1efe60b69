"""Dependencies shared by the routers.

They are `async def` on purpose: FastAPI runs plain `def` dependencies in a thread pool,
two thread hops per request for a few microseconds of work.
"""

import hashlib

from fastapi import Request

from modelkube_serving.auth import bearer_token, key_accepted
from modelkube_serving.errors import Unauthorized, Unavailable
from modelkube_serving.services.fine_tuning import FineTuningService
from modelkube_serving.state import RuntimeState


def runtime(request: Request) -> RuntimeState:
    state: RuntimeState = request.app.state.runtime
    return state


def fine_tuning(request: Request) -> FineTuningService:
    service: FineTuningService = request.app.state.fine_tuning
    return service


async def require_api_key(request: Request) -> None:
    keys = runtime(request).api_keys
    if keys and not key_accepted(bearer_token(request.headers.get("authorization")), keys):
        raise Unauthorized(
            "Incorrect or missing API key. Send it as 'Authorization: Bearer <key>'."
        )


def client_key(request: Request) -> str:
    """Whose request this is, for fair queueing and rate limits: a digest of its API key, so
    the key itself is never kept. Without keys every client shares one."""
    token = bearer_token(request.headers.get("authorization"))
    return hashlib.sha256(token).hexdigest()[:16] if token and runtime(request).api_keys else ""


async def require_serving(request: Request) -> None:
    state = runtime(request)
    if state.draining:
        raise Unavailable("The server is shutting down; retry on another replica.")
    if not state.engine.ready:
        raise Unavailable("The model is still loading; retry shortly.")
