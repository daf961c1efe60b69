"""The FastAPI app the runtime (both modes) and the gateway start from."""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def api_app(title: str, lifespan: Lifespan) -> FastAPI:
    """No docs pages (an API server, not a site), and no redirect for a path with a slash too
    many: Starlette answered `POST /v1/programs/` with a 307 to `/v1/programs`, which an
    OpenAI client does not follow; it is a 404 with OpenAI's error body, as any unknown path."""
    return FastAPI(
        title=title, lifespan=lifespan, docs_url=None, redoc_url=None, redirect_slashes=False
    )
