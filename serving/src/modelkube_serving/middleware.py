"""ASGI middleware around every mode: request accounting and the body size limit."""

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelkube_serving.engine.intake import Intake
from modelkube_serving.errors import PayloadTooLarge
from modelkube_serving.metrics import RuntimeMetrics

_ENDPOINTS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/models": "models",
}


def endpoint_label(path: str) -> str | None:
    """The `endpoint` label of an API path; None for paths that are not counted."""
    if path.startswith("/v1/programs/"):
        return "programs"
    if path.startswith("/v1/models/"):
        return "models"
    return _ENDPOINTS.get(path)


class BodyTooLarge(Exception):
    pass


class RequestAccounting:
    """Counts the API's requests by status, and refuses their bodies over the size limit.

    The limit counts the bytes actually received, so a chunked body (no Content-Length) is cut
    off at the limit rather than read whole; a declared Content-Length over it is refused before
    any byte is read.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: RuntimeMetrics,
        model: str,
        max_body_bytes: int,
        intake: Intake | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.model = model
        self.max_body_bytes = max_body_bytes
        # Completions are counted on their way to the engine from here (engine/intake.py).
        self.intake = intake
        self._counters: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = endpoint_label(scope.get("path", "")) if scope["type"] == "http" else None
        if endpoint is None:  # operations and file uploads: not counted, not limited here
            await self.app(scope, receive, send)
            return
        status = 500
        started = False

        async def send_recording(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            if self._declared_too_large(scope):
                await self._reject_too_large(send_recording)
            elif self.intake is not None and endpoint in ("chat", "completions"):
                with self.intake.arriving():
                    await self.app(scope, self._counting(receive), send_recording)
            else:
                await self.app(scope, self._counting(receive), send_recording)
        except BodyTooLarge:
            if started:
                raise
            await self._reject_too_large(send_recording)
        finally:
            # The route names the model once it validated it; unknown names stay unlabelled.
            model = scope.get("state", {}).get("served_model", self.model)
            self._counter(model, endpoint, status).inc()

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        return counted

    def _counter(self, model: str, endpoint: str, status: int) -> Any:
        key = (model, endpoint, status)
        counter = self._counters.get(key)
        if counter is None:  # a few dozen label sets at most: models x endpoints x statuses
            counter = self.metrics.requests.labels(
                model=model, endpoint=endpoint, status=str(status)
            )
            self._counters[key] = counter
        return counter

    def _declared_too_large(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                return value.isdigit() and int(value) > self.max_body_bytes
        return False

    async def _reject_too_large(self, send: Send) -> None:
        error = PayloadTooLarge(f"The request body is larger than {self.max_body_bytes} bytes.")
        body = json.dumps(error.body()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": error.status_code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
