"""Proxy mode: the OpenAI API in front of a hosted provider.

A request is checked just enough to answer for our side of it (the JSON, our model name, the
fields admission needs), renamed to the provider's model, and sent through the native client,
which pools connections, retries 429/5xx with backoff and `Retry-After`, and trips a breaker
when the provider keeps failing. Answers go back as the provider sent them, byte for byte, and
streams chunk by chunk; only errors are reshaped, into OpenAI's error body. Requests queue in
the same admission (keys, fairness, rate limits) and count in the same metrics as local ones.
"""

import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from modelkube_native import (
    CircuitOpenError,
    UpstreamClient,
    UpstreamError,
    UpstreamStream,
    UpstreamTimeoutError,
    error_frame,
)

from modelkube_serving import bodies
from modelkube_serving.errors import (
    APIError,
    InvalidRequest,
    ModelNotFound,
    UpstreamAnswered,
    UpstreamPaused,
    UpstreamTimedOut,
    UpstreamUnreachable,
)
from modelkube_serving.metrics import RuntimeMetrics
from modelkube_serving.protocol import ChatEnvelope, CompletionEnvelope
from modelkube_serving.services import responses
from modelkube_serving.services.admission import Admission, Slot, Ticket
from modelkube_serving.upstream.providers import UpstreamTarget, error_body, unsupported_endpoint

_PATHS = {"chat": "/chat/completions", "completions": "/completions"}
_JSON = [("content-type", "application/json")]
_STREAM = [("content-type", "application/json"), ("accept", "text/event-stream")]
_BYTES_PER_TOKEN = 4  # for the token rate limit, without the provider's tokenizer


@dataclass
class Forward:
    """A request checked and renamed, ready for the provider."""

    endpoint: str  # "chat" or "completions"
    body: bytes
    stream: bool
    cost: int  # what the token rate limit charges: a prompt estimate plus max_tokens
    priority: int
    arrived: float


@dataclass(frozen=True)
class Relayed:
    """A whole answer from the provider, to pass on as it is."""

    body: bytes
    content_type: str


class ProxyService:
    def __init__(
        self,
        target: UpstreamTarget,
        client: UpstreamClient,
        admission: Admission,
        metrics: RuntimeMetrics,
        model_name: str,
    ) -> None:
        self.target = target
        self.client = client
        self.admission = admission
        self.metrics = metrics
        self.model_name = model_name
        self.created = int(time.time())
        # Label children looked up once: `labels()` costs more than the update itself.
        labels = {"model": model_name}
        self._ttft = metrics.ttft.labels(**labels)
        self._duration = {e: metrics.duration.labels(endpoint=e, **labels) for e in _PATHS}
        self._prompt_tokens = metrics.prompt_tokens.labels(**labels)
        self._generation_tokens = metrics.generation_tokens.labels(**labels)
        self._outcomes: dict[str, Any] = {}

    def model_cards(self) -> list[dict[str, Any]]:
        return [responses.model_card(self.model_name, self.created)]

    def model_card(self, name: str) -> dict[str, Any]:
        if name != self.model_name:
            raise ModelNotFound(f"The model `{name}` does not exist.", param="model")
        return responses.model_card(name, self.created)

    # -- preparing ---------------------------------------------------------------------
    def prepare(self, endpoint: str, raw: bytes) -> Forward:
        """Checked by the rules local mode applies to the same fields (`bodies`, the
        envelopes); every other field goes to the provider as sent."""
        body = bodies.read_json(raw)
        envelope: ChatEnvelope | CompletionEnvelope = (
            bodies.validate(ChatEnvelope, body)
            if endpoint == "chat"
            else bodies.validate(CompletionEnvelope, body)
        )
        if envelope.model != self.model_name:
            raise ModelNotFound(f"The model `{envelope.model}` does not exist.", param="model")
        why = unsupported_endpoint(self.target.provider, endpoint)
        if why is not None:
            raise InvalidRequest(why)
        limit = envelope.token_limit() if isinstance(envelope, ChatEnvelope) else None
        limit = limit or envelope.max_tokens
        body.pop("priority", None)  # ours (vLLM's), for admission: not the provider's
        body["model"] = self.target.model
        forwarded = json.dumps(body, separators=(",", ":")).encode()
        cost = len(raw) // _BYTES_PER_TOKEN + (limit or 0)
        return Forward(
            endpoint, forwarded, envelope.stream, cost, envelope.priority, time.perf_counter()
        )

    async def admit(self, forward: Forward, key: str) -> Slot:
        return await self.admission.acquire(Ticket(key, forward.priority, max(forward.cost, 1)))

    # -- forwarding --------------------------------------------------------------------
    async def complete(self, forward: Forward, slot: Slot) -> Relayed:
        """The provider's whole answer; its errors raise as ours."""
        try:
            try:
                answer = await self.client.arequest(
                    "POST", _PATHS[forward.endpoint], forward.body, _JSON
                )
            except UpstreamError as exc:
                raise self._failed(exc) from None
            self._count(str(answer.status))
            if answer.status >= 400:
                raise self._answered(answer.status, answer.body, answer.headers)
            self._observe(forward, _usage_of(answer.body))
            return Relayed(answer.body, answer.headers.get("content-type", "application/json"))
        finally:
            slot.release()

    async def open_stream(self, forward: Forward, slot: Slot) -> UpstreamStream:
        """The provider's stream once its headers arrived; an error answer raises as ours."""
        try:
            stream = await self.client.astream(
                "POST", _PATHS[forward.endpoint], forward.body, _STREAM
            )
        except UpstreamError as exc:
            slot.release()
            raise self._failed(exc) from None
        if stream.status >= 400:
            self._count(str(stream.status))
            slot.release()
            raw = b"".join([chunk async for chunk in stream])
            raise self._answered(stream.status, raw, stream.headers)
        return stream

    async def relay(
        self, forward: Forward, slot: Slot, stream: UpstreamStream
    ) -> AsyncIterator[bytes]:
        """The stream's chunks as they come. A stream cut short ends with an error event, as
        OpenAI's own streams do, since the 200 has been sent already."""
        usage: dict[str, Any] | None = None
        first = True
        outcome = str(stream.status)  # one outcome per call: its status, or "cut"
        try:
            async for chunk in stream:
                if first:
                    first = False
                    self._ttft.observe(time.perf_counter() - forward.arrived)
                if b'"usage"' in chunk:
                    usage = _stream_usage(chunk) or usage
                yield chunk
        except UpstreamError as exc:
            outcome = "cut"
            failed = self._failed(exc, count=False)
            yield error_frame(
                failed.message, failed.error_type, param=failed.param, code=failed.code
            )
        finally:
            self._count(outcome)
            stream.close()
            slot.release()
            self._observe(forward, usage)

    async def chat(self, body: dict[str, Any], key: str) -> dict[str, Any]:
        """A chat completion as a dict, for callers inside the runtime (DSPy programs)."""
        forward = self.prepare("chat", json.dumps({**body, "model": self.model_name}).encode())
        relayed = await self.complete(forward, await self.admit(forward, key))
        answer: dict[str, Any] = json.loads(relayed.body)
        return answer

    # -- accounting --------------------------------------------------------------------
    def _failed(self, exc: UpstreamError, count: bool = True) -> APIError:
        """Our error for a call that got no (whole) answer; `count` records its outcome."""
        error: APIError
        if isinstance(exc, CircuitOpenError):
            outcome, error = (
                "circuit_open",
                UpstreamPaused(str(exc), max(1, math.ceil(exc.retry_after_s))),
            )
        elif isinstance(exc, UpstreamTimeoutError):
            outcome, error = "timeout", UpstreamTimedOut(str(exc))
        else:
            outcome, error = "unreachable", UpstreamUnreachable(str(exc))
        if count:
            self._count(outcome)
        return error

    def _answered(self, status: int, raw: bytes, headers: dict[str, str]) -> UpstreamAnswered:
        body = error_body(self.target.provider, status, raw)
        return UpstreamAnswered(status, body, headers.get("retry-after"))

    def _count(self, outcome: str) -> None:
        counter = self._outcomes.get(outcome)
        if counter is None:
            provider = self.target.provider.name
            counter = self.metrics.upstream_requests.labels(provider=provider, outcome=outcome)
            self._outcomes[outcome] = counter
        counter.inc()

    def _observe(self, forward: Forward, usage: dict[str, Any] | None) -> None:
        self._duration[forward.endpoint].observe(time.perf_counter() - forward.arrived)
        if usage:
            self._prompt_tokens.inc(_count_of(usage, "prompt_tokens"))
            self._generation_tokens.inc(_count_of(usage, "completion_tokens"))


def _count_of(usage: dict[str, Any], name: str) -> int:
    value = usage.get(name)
    return value if isinstance(value, int) and value >= 0 else 0


def _usage_of(raw: bytes) -> dict[str, Any] | None:
    if b'"usage"' not in raw:
        return None
    try:
        usage = json.loads(raw).get("usage")
    except (ValueError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None


def _stream_usage(chunk: bytes) -> dict[str, Any] | None:
    """The usage of the event in `chunk` that carries it; None when that event is split
    across chunks (the token counters then miss this request, the stream is unharmed)."""
    for line in chunk.splitlines():
        if line.startswith(b"data:") and b'"usage"' in line:
            usage = _usage_of(line[5:])
            if usage is not None:
                return usage
    return None
