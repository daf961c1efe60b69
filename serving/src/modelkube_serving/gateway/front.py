"""`modelkube gateway --front native`: the gateway's port served by the Rust core's HttpFront.

A request the gateway can route at once (a POST to one of the two completion endpoints, its
key accepted, its body valid, its model known with a ready pod, an admission slot free) is
routed by `FrontRouter` on the front's tokio thread, holding the event loop's gate, and
relayed by the front straight from the pod: no event loop on its path, and its tokens never
enter Python. Everything else (a hold for a model scaling from zero, a queued or refused
admission, an error to render, /v1/models, the operations endpoints) the front relays whole
to the same gateway app, served by uvicorn on a loopback port, which answers as it always
has. Both paths share one state (catalog, pod loads, admission, metrics); the front's path is
only ever a shortcut through the other, and a request it routed to a pod that cannot be
reached, or is draining, goes the other way too, saying which pod it tried and why (the
`x-modelkube-tried` header), so that the app's retry picks another pod and counts the retry
as it would its own.

What the router touches it touches between two of the loop's turns (the gate). A relay's end
is booked there too, on the front's thread, unless it must wake one of the loop's waiters (a
request queued for the admission slot it gives back, or the shutdown waiting for the relays):
that goes through `call_soon_threadsafe`. Waking the loop for every request cost ~0.15 ms of
added latency on a 2-core machine, where the loop's thread competes for the cores with the
front's and the client's.
"""

import asyncio
import logging
import socket
from functools import partial
from typing import Any

import uvicorn
from modelkube_native import Gate, HttpFront, UpstreamClient

from modelkube_serving.auth import bearer_token, client_key, key_accepted
from modelkube_serving.errors import APIError
from modelkube_serving.gated_loop import gated_loop
from modelkube_serving.gateway.fastpath import FastPath
from modelkube_serving.gateway.forward import PATHS, Forwarder, Routed
from modelkube_serving.gateway.server import GatewayServer
from modelkube_serving.services.admission import Slot, Ticket
from modelkube_serving.state import ServingState

log = logging.getLogger("modelkube.gateway")

ENDPOINTS = {path: endpoint for endpoint, path in PATHS.items()}
# The loopback hop to the app: a held request answers after its hold, so its headers may take
# the hold and then the pod's own response time.
FALLBACK_RESPONSE_MARGIN_S = 30.0

_Route = tuple[UpstreamClient, Any] | None


class FrontRouter:
    """Routes what can go at once; None leaves the request to the app."""

    def __init__(self, app: FastPath, loop: asyncio.AbstractEventLoop, max_body_bytes: int) -> None:
        self.state: ServingState = app.state.runtime
        self.forwarder: Forwarder = app.state.forwarder
        self.loop = loop
        self.max_body_bytes = max_body_bytes
        self.in_flight = 0
        self.routed = 0  # requests relayed from the front: what the tests and the bench read
        self.stopping = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._counters: dict[tuple[str, str, int], Any] = {}

    def __call__(self, method: str, path: str, authorization: str | None, body: bytes) -> _Route:
        endpoint = ENDPOINTS.get(path)
        state = self.state
        if method != "POST" or endpoint is None or state.draining:
            return None
        if state.api_keys and not key_accepted(bearer_token(authorization), state.api_keys):
            return None
        if len(body) > self.max_body_bytes:
            return None
        try:
            routed = self.forwarder.prepare(endpoint, body, authorization)
        except APIError:
            return None
        endpoints = self.forwarder.catalog.endpoints(routed.target.service)
        if not endpoints:
            return None  # the app holds it while its model scales up
        ticket = Ticket(
            client_key(authorization, state.api_keys), routed.priority, max(routed.cost, 1)
        )
        slot = self.forwarder.admission.try_acquire(ticket)
        if slot is None:
            return None
        pod = self.forwarder.choose_pod(routed, endpoints)
        self.in_flight += 1
        self.routed += 1
        self._idle.clear()
        client = self.forwarder.upstreams.client(pod)
        return client, partial(self._done, routed, pod, slot)

    def _done(self, routed: Routed, pod: str, slot: Slot, status: int | None) -> None:
        """On the front's thread, holding the gate; on the loop where a waiter must wake.
        `status` None: the pod could not answer and the request went on to the app, which
        retries it on another pod and counts it then."""
        if self.stopping or self.forwarder.admission.queued:
            self.loop.call_soon_threadsafe(self._finish, routed, pod, slot, status)
        else:
            self._finish(routed, pod, slot, status)

    def _finish(self, routed: Routed, pod: str, slot: Slot, status: int | None) -> None:
        slot.release()
        self.forwarder.done(routed, pod)
        if status is not None:
            self._counter(routed.model, routed.endpoint, status).inc()
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    def _counter(self, model: str, endpoint: str, status: int) -> Any:
        key = (model, endpoint, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self.state.metrics.requests.labels(
                model=model, endpoint=endpoint, status=str(status)
            )
            self._counters[key] = counter
        return counter

    async def wait_idle(self, timeout_s: float) -> None:
        """Until the relays routed here are over, or `timeout_s`."""
        self.stopping = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            log.warning("%d relays still running at the end of the drain", self.in_flight)


class FrontedServer(GatewayServer):
    """The app's uvicorn on a loopback socket, behind an HttpFront on the gateway's port; the
    front opens once the app started (its catalog synced) and closes first on shutdown."""

    def __init__(
        self,
        config: uvicorn.Config,
        stop_holding: Any,
        host: str,
        port: int,
        response_timeout_s: float,
    ) -> None:
        super().__init__(config, stop_holding)
        self.public = (host, port)
        self.response_timeout_s = response_timeout_s
        self.front: HttpFront | None = None
        self.router: FrontRouter | None = None
        self.front_failed = False
        self.gate = Gate()

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        internal = socket.create_server(("127.0.0.1", 0))
        with asyncio.Runner(loop_factory=partial(gated_loop, self.gate)) as runner:
            runner.run(self.serve(sockets=[internal]))

    @property
    def port(self) -> int:
        return self.front.port if self.front is not None else self.public[1]

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started or not sockets:
            return
        fallback = UpstreamClient(
            f"http://127.0.0.1:{sockets[0].getsockname()[1]}",
            response_timeout_s=self.response_timeout_s + FALLBACK_RESPONSE_MARGIN_S,
            max_retries=0,
            breaker_failures=0,
        )
        app: Any = self.config.app
        app.state.behind_front = True
        self.router = FrontRouter(app, asyncio.get_running_loop(), app.state.max_body_bytes)
        host, port = self.public
        try:
            self.front = HttpFront(host, port, self.router, self.gate, fallback)
        except OSError as exc:
            log.error("%s", exc)
            self.front_failed = True
            self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.stop_holding()
        if self.front is not None:
            self.front.close()
        if self.router is not None:
            await self.router.wait_idle(self.config.timeout_graceful_shutdown or 0)
        await super().shutdown(sockets)
