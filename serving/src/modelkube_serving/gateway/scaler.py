"""Scale from zero and back: a request for a model with no ready replica wakes its
ModelService (`/scale` to 1) and is held until an endpoint is ready, up to the hold timeout;
a ModelService that may scale to zero goes to zero after `autoscaling.idleSeconds` without a
request.

A request counts whichever way it came: through this gateway, or as the pods report it (another
gateway replica, or a client of the ModelService's own Service), so a model in use is not
scaled away from its clients.
"""

import asyncio
import logging
import math
import time
from collections.abc import Callable

from modelkube_operator.api import API_VERSION
from modelkube_operator.k8s.client import ApiError, Kube

from modelkube_serving.errors import NoReadyReplica
from modelkube_serving.gateway.catalog import Catalog, ModelServiceView
from modelkube_serving.gateway.metrics import GatewayMetrics

log = logging.getLogger("modelkube.gateway")
IDLE_CHECK_S = 1.0


class Scaler:
    def __init__(
        self,
        kube: Kube,
        catalog: Catalog,
        metrics: GatewayMetrics,
        hold_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        pod_active_at: Callable[[str], float | None] = lambda _endpoint: None,
    ) -> None:
        self.kube = kube
        self.catalog = catalog
        self.metrics = metrics
        self.hold_timeout_s = hold_timeout_s
        self._clock = clock
        self._pod_active_at = pod_active_at  # on `clock`, when the pod last served anyone
        self._last_used: dict[tuple[str, str], float] = {}
        self._in_flight: dict[tuple[str, str], int] = {}
        self._waking: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()

    # -- activity ------------------------------------------------------------------------
    def started(self, service: ModelServiceView) -> None:
        self._in_flight[service.key] = self._in_flight.get(service.key, 0) + 1
        self._last_used[service.key] = self._clock()

    def finished(self, service: ModelServiceView) -> None:
        self._in_flight[service.key] = self._in_flight.get(service.key, 1) - 1
        self._last_used[service.key] = self._clock()

    # -- holding -------------------------------------------------------------------------
    def stop_holding(self) -> None:
        """The gateway is stopping: held requests, and any that would be held, get a 503 now.
        A pod may take longer to get ready than the gateway has left to live, and uvicorn
        cancels what is still running at the end of its graceful shutdown into a 500."""
        self._stopping.set()

    async def ready_endpoints(self, service: ModelServiceView, model: str) -> list[str]:
        """The service's ready endpoints, waking it and holding the caller when it has none;
        NoReadyReplica after the hold timeout, or once the gateway stops."""
        endpoints = self.catalog.endpoints(service)
        if endpoints:
            return endpoints
        started = self._clock()
        # A held request is activity: without it counted in flight, a cold start longer than
        # idleSeconds was scaled back to zero under its waiting requests (seen on the real node).
        self.started(service)
        try:
            self._wake(service, model)
            endpoints = await self._hold(service)
        except asyncio.CancelledError:
            self._held(model, "gone", started)
            raise
        finally:
            self.finished(service)
        if endpoints:
            self._held(model, "ready", started)
            return endpoints
        if self._stopping.is_set():
            self._held(model, "shutdown", started)
            raise NoReadyReplica(
                f"The model `{model}` has no ready replica yet and this gateway is shutting "
                "down; retry (the model keeps scaling up).",
                retry_after_s=1,
            )
        self._held(model, "timeout", started)
        raise NoReadyReplica(
            f"The model `{model}` has no ready replica yet (held "
            f"{self.hold_timeout_s:g} s while it scales up); retry shortly.",
            retry_after_s=max(1, math.ceil(self.hold_timeout_s / 4)),
        )

    async def _hold(self, service: ModelServiceView) -> list[str]:
        """The endpoints once some are ready; none at the hold timeout or when stopping."""
        if self._stopping.is_set():
            return []
        ready = asyncio.ensure_future(self._until_ready(service))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait(
                {ready, stopping}, timeout=self.hold_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
            stopping.cancel()
        return ready.result() if ready.done() and not ready.cancelled() else []

    async def _until_ready(self, service: ModelServiceView) -> list[str]:
        while True:
            changed = self.catalog.next_change()
            current = self.catalog.services.get(service.key, service)
            endpoints = self.catalog.endpoints(current)
            if endpoints:
                return endpoints
            await changed.wait()

    def _wake(self, service: ModelServiceView, model: str) -> None:
        """Patches /scale to 1 once for all the requests waiting on a service at zero."""
        current = self.catalog.services.get(service.key, service)
        if current.replicas > 0 or service.key in self._waking:
            return
        task = asyncio.create_task(self._scale(current, 1, model))
        self._waking[service.key] = task
        task.add_done_callback(lambda _: self._waking.pop(service.key, None))

    def _held(self, model: str, outcome: str, started: float) -> None:
        self.metrics.holds.labels(model=model, outcome=outcome).inc()
        self.metrics.hold_seconds.labels(model=model).observe(self._clock() - started)

    # -- idling --------------------------------------------------------------------------
    async def run_idle(self) -> None:
        """Runs until cancelled: scales idle services to zero."""
        while True:
            await asyncio.sleep(IDLE_CHECK_S)
            for service in self.idle():
                await self._scale(service, 0, service.name)

    def idle(self) -> list[ModelServiceView]:
        """Services that may scale to zero, are up, and had no request for their idle time
        (counted from when the gateway first saw them, at the earliest), through this gateway
        or as their pods report."""
        now = self._clock()
        found = []
        for service in list(self.catalog.services.values()):
            if not service.scales_to_zero or service.replicas == 0:
                continue
            last = self._last_used.setdefault(service.key, now)
            for endpoint in self.catalog.endpoints(service):
                last = max(last, self._pod_active_at(endpoint) or last)
            if self._in_flight.get(service.key, 0) == 0 and now - last >= service.idle_s:
                found.append(service)
        return found

    async def _scale(self, service: ModelServiceView, replicas: int, model: str) -> None:
        direction = "up" if replicas else "down"
        try:
            await self.kube.merge_patch(
                API_VERSION,
                "ModelService",
                service.namespace,
                service.name,
                {"spec": {"replicas": replicas}},
                subresource="scale",
            )
        except ApiError as exc:
            log.warning(
                "cannot scale %s/%s %s: %s", service.namespace, service.name, direction, exc
            )
            return
        log.info("scaled %s/%s to %d", service.namespace, service.name, replicas)
        self._last_used[service.key] = self._clock()
        self.metrics.scales.labels(model=service.name, direction=direction).inc()
