"""The gateway's data path: a request checked, routed to a pod of its model, and forwarded
through the native client; a pod that refuses the connection, vanishes mid-request or is
draining gets the request once more on another pod."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from modelkube_native import (
    CircuitOpenError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamResponse,
    UpstreamStream,
    UpstreamTimeoutError,
    error_frame,
)

from modelkube_serving import bodies
from modelkube_serving.errors import ModelNotFound, UpstreamTimedOut, UpstreamUnreachable
from modelkube_serving.gateway.catalog import Catalog, Target
from modelkube_serving.gateway.fields import Fields, plain_fields
from modelkube_serving.gateway.metrics import GatewayMetrics
from modelkube_serving.gateway.pod_load import PodLoads
from modelkube_serving.gateway.routing import choose, request_key
from modelkube_serving.gateway.scaler import Scaler
from modelkube_serving.gateway.upstreams import Upstreams
from modelkube_serving.protocol import ChatEnvelope, CompletionEnvelope
from modelkube_serving.services.admission import Admission, Slot, Ticket

PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
# The native front's account of a try it made before it passed the request on (front.rs).
TRIED_HEADER = "x-modelkube-tried"
_TRIED_REASONS = frozenset({"refused", "gone", "timeout", "draining"})
_BYTES_PER_TOKEN = 4  # the token rate limit's estimate, as in proxy mode
_DRAINING = 503  # a pod shutting down says so; another pod can answer


@dataclass
class Routed:
    """A request checked and bound for a model."""

    endpoint: str  # "chat" or "completions"
    raw: bytes
    model: str
    target: Target
    key: bytes  # the routing key: conversation start and adapter
    stream: bool
    cost: int
    priority: int
    headers: list[tuple[str, str]]


@dataclass(frozen=True)
class Tried:
    """A pod a request was sent to before it reached this path, and why that did not answer."""

    pod: str
    reason: str  # refused, gone, timeout or draining

    @classmethod
    def parse(cls, header: str | None) -> "Tried | None":
        """`<host:port> <reason>` as the front writes it; anything else is no try."""
        pod, _, reason = (header or "").strip().partition(" ")
        return cls(pod, reason) if pod and reason in _TRIED_REASONS else None


class Forwarder:
    def __init__(
        self,
        catalog: Catalog,
        scaler: Scaler,
        upstreams: Upstreams,
        admission: Admission,
        metrics: GatewayMetrics,
        bound_factor: float,
        pod_loads: PodLoads,
    ) -> None:
        self.catalog = catalog
        self.scaler = scaler
        self.upstreams = upstreams
        self.admission = admission
        self.metrics = metrics
        self.bound_factor = bound_factor
        self.pod_loads = pod_loads

    def model_cards(self) -> list[dict[str, Any]]:
        return [_card(m) for m in self.catalog.models()]

    def model_card(self, name: str) -> dict[str, Any]:
        if self.catalog.resolve(name) is None:
            raise _unknown(name)
        return _card(name)

    def prepare(self, endpoint: str, raw: bytes, authorization: str | None) -> Routed:
        body = bodies.read_json(raw)
        fields = plain_fields(endpoint, body) or _validated_fields(endpoint, body)
        target = self.catalog.resolve(fields.model)
        if target is None:
            raise _unknown(fields.model)
        headers = [("content-type", "application/json")]
        if fields.stream:
            headers.append(("accept", "text/event-stream"))
        if authorization:  # a ModelService's own keys still apply behind the gateway
            headers.append(("authorization", authorization))
        return Routed(
            endpoint,
            raw,
            fields.model,
            target,
            request_key(body, target.adapter),
            fields.stream,
            len(raw) // _BYTES_PER_TOKEN + (fields.token_limit or 0),
            fields.priority,
            headers,
        )

    async def admit(self, routed: Routed, key: str) -> Slot:
        return await self.admission.acquire(Ticket(key, routed.priority, max(routed.cost, 1)))

    async def complete(self, routed: Routed, before: Tried | None = None) -> UpstreamResponse:
        """The pod's whole answer, whatever its status; `before`: a try the front made."""
        tried = self._tried_before(routed, before)
        while True:
            pod = await self._pick(routed, tried)
            try:
                answer = await self.upstreams.client(pod).arequest(
                    "POST", PATHS[routed.endpoint], routed.raw, routed.headers
                )
            except UpstreamError as exc:
                self._retry_or_raise(routed, tried, pod, exc)
                continue
            finally:
                self.done(routed, pod)
            if answer.status == _DRAINING and self._may_retry(routed, tried, pod, "draining"):
                continue
            return answer

    async def open_stream(
        self, routed: Routed, before: Tried | None = None
    ) -> tuple[UpstreamStream, Slot]:
        """The pod's stream once its headers came, and the pod's share of the load, which
        counts until it is released (once, however the stream ends)."""
        tried = self._tried_before(routed, before)
        while True:
            pod = await self._pick(routed, tried)
            try:
                stream = await self.upstreams.client(pod).astream(
                    "POST", PATHS[routed.endpoint], routed.raw, routed.headers
                )
            except UpstreamError as exc:
                self.done(routed, pod)
                self._retry_or_raise(routed, tried, pod, exc)
                continue
            except BaseException:  # cancelled: the client left before the headers came
                self.done(routed, pod)
                raise
            if stream.status == _DRAINING and self._may_retry(routed, tried, pod, "draining"):
                stream.close()
                self.done(routed, pod)
                continue
            return stream, Slot(partial(self.done, routed, pod))

    async def relay(self, stream: UpstreamStream, load: Slot) -> AsyncIterator[bytes]:
        try:
            async for chunk in stream:
                yield chunk
        except UpstreamError as exc:  # the 200 went out already: end as OpenAI's streams do
            yield error_frame(
                f"the model's pod stopped mid-answer: {exc}",
                "server_error",
                code="upstream_unreachable",
            )
        finally:
            stream.close()
            load.release()

    # -- routing -------------------------------------------------------------------------
    async def _pick(self, routed: Routed, tried: set[str]) -> str:
        endpoints = await self.scaler.ready_endpoints(routed.target.service, routed.model)
        return self.choose_pod(routed, endpoints, tried)

    def choose_pod(
        self, routed: Routed, endpoints: list[str], tried: frozenset[str] | set[str] = frozenset()
    ) -> str:
        """One of `endpoints` (not empty) for `routed`, its load counted until `done`."""
        service = routed.target.service
        candidates = [e for e in endpoints if e not in tried] or endpoints
        loads = {e: self.pod_loads.of(e) for e in candidates}
        choice = choose(routed.key, loads, self.bound_factor)
        self.metrics.routed_to(routed.model, choice.affinity).inc()
        self.pod_loads.started(choice.endpoint)
        self.scaler.started(service)
        return choice.endpoint

    def done(self, routed: Routed, pod: str) -> None:
        self.pod_loads.finished(pod)
        self.scaler.finished(routed.target.service)

    def _tried_before(self, routed: Routed, before: Tried | None) -> set[str]:
        """The pods tried so far, counting the front's try as this path's first: its retry is
        then the request's one retry, and what the front could not reach is not retried."""
        tried: set[str] = set()
        if before is None:
            return tried
        if before.reason == "timeout":
            raise UpstreamTimedOut(f"the model's pod {before.pod} did not answer in time")
        retried = self._may_retry(routed, tried, before.pod, before.reason)
        # With no other pod, a draining one is asked again: its 503 is then passed on.
        if not retried and before.reason != "draining":
            raise UpstreamUnreachable(
                f"the model's pods could not be reached: {before.pod} {before.reason}"
            )
        return tried

    def _retry_or_raise(
        self, routed: Routed, tried: set[str], pod: str, exc: UpstreamError
    ) -> None:
        if isinstance(exc, UpstreamTimeoutError):
            raise UpstreamTimedOut(f"the model's pod did not answer in time: {exc}") from None
        # The native client raises one error for anything before the answer's headers; its
        # message tells a refused connection (nothing listens) from one cut mid-request.
        refused = isinstance(exc, UpstreamConnectError) and "refused" in str(exc).lower()
        reason = "refused" if refused else "gone"
        if isinstance(exc, CircuitOpenError) or not self._may_retry(routed, tried, pod, reason):
            raise UpstreamUnreachable(f"the model's pods could not be reached: {exc}") from None

    def _may_retry(self, routed: Routed, tried: set[str], pod: str, reason: str) -> bool:
        """Once per request, and only when another pod is there to try."""
        tried.add(pod)
        others = set(self.catalog.endpoints(routed.target.service)) - tried
        if len(tried) > 1 or not others:
            return False
        self.metrics.retries.labels(model=routed.model, reason=reason).inc()
        return True


def _validated_fields(endpoint: str, body: dict[str, Any]) -> Fields:
    """The fields from the envelope every mode validates: its 400 for a body the plain
    reading gave up on, or the fields of one it could not read plainly (nulls, say)."""
    envelope: ChatEnvelope | CompletionEnvelope = (
        bodies.validate(ChatEnvelope, body)
        if endpoint == "chat"
        else bodies.validate(CompletionEnvelope, body)
    )
    limit = envelope.token_limit() if isinstance(envelope, ChatEnvelope) else None
    return Fields(envelope.model, envelope.stream, limit or envelope.max_tokens, envelope.priority)


def _unknown(model: str) -> ModelNotFound:
    # Names only what the caller sent: the 404 must not list other models.
    return ModelNotFound(f"The model `{model}` does not exist.", param="model")


def _card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "modelkube"}
