"""The gateway's two completion endpoints as a bare ASGI app in front of FastAPI.

Every request the gateway forwards used to cross FastAPI's whole stack (its error, telemetry,
body-limit, exception and exit-stack middlewares, the router, the request wrapper), and each
response message went back out through three `send` wrappers. py-spy on the gateway under the
added-latency loop of bench/gateway put half of its request time there (issue 19: 1.57 ms
added p50 against a 1 ms target). Here a request for one of these paths goes straight to its
handler, under the same request accounting and body limit; its errors still become OpenAI's
error body through the same `error_response`. Everything else (/v1/models, the operations
endpoints, the lifespan) goes to the FastAPI app as before.
"""

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from modelkube_serving.error_handlers import error_response
from modelkube_serving.errors import APIError

log = logging.getLogger("modelkube.gateway")

Handler = Callable[[Request], Awaitable[Response]]


class Dispatch:
    """Calls the handler of a POSTed path, rendering its API errors."""

    def __init__(self, handlers: Mapping[str, Handler]) -> None:
        self.handlers = dict(handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self.handlers[scope["path"]](request)
        except APIError as exc:
            response = error_response(exc)
        except Exception as exc:  # FastAPI's catch-all handler, as the other routes have
            log.exception("unhandled error", exc_info=exc)
            response = error_response(
                APIError("The server had an error while processing your request.")
            )
        await response(scope, receive, send)


class FastPath:
    """`fast` for POSTs to `paths`, `app` for the rest; `state` is the app's."""

    def __init__(self, app: ASGIApp, fast: ASGIApp, paths: frozenset[str]) -> None:
        self.app = app
        self.fast = fast
        self.paths = paths
        self.state: Any = getattr(app, "state", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            # Starlette's Request.app reads the scope: the handlers find app.state there.
            scope["app"] = self.app
            await self.fast(scope, receive, send)
            return
        await self.app(scope, receive, send)
