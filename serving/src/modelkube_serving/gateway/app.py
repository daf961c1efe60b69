"""The gateway's FastAPI application: the catalog's watch, the idle scaler, and the routes,
with the runtime's keys, admission, error bodies, request accounting and /metrics."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from modelkube_operator.k8s.client import Kube

from modelkube_serving.api_app import api_app
from modelkube_serving.error_handlers import install_error_handlers
from modelkube_serving.gateway import routes
from modelkube_serving.gateway.catalog import Catalog
from modelkube_serving.gateway.fastpath import Dispatch, FastPath
from modelkube_serving.gateway.forward import Forwarder
from modelkube_serving.gateway.metrics import GatewayMetrics
from modelkube_serving.gateway.pod_load import PodLoads
from modelkube_serving.gateway.routing import DEFAULT_BOUND_FACTOR
from modelkube_serving.gateway.scaler import Scaler
from modelkube_serving.gateway.upstreams import Upstreams
from modelkube_serving.gateway.watch import synced, watch_all
from modelkube_serving.metrics import RuntimeMetrics
from modelkube_serving.middleware import RequestAccounting
from modelkube_serving.routes import ops
from modelkube_serving.services.admission import Admission, AdmissionLimits
from modelkube_serving.state import ServingState

NAME = "gateway"  # the `model` label of requests no model was resolved for
PRUNE_S = 30.0  # how often the clients of pods that left are dropped


@dataclass(frozen=True)
class GatewayConfig:
    namespace: str | None  # None: every namespace
    limits: AdmissionLimits
    api_keys: tuple[bytes, ...] = ()
    bound_factor: float = DEFAULT_BOUND_FACTOR
    hold_timeout_s: float = 120.0
    response_timeout_s: float = 300.0
    max_body_bytes: int = 8 << 20


def create_gateway(config: GatewayConfig, kube: Kube) -> FastPath:
    runtime_metrics = RuntimeMetrics()
    metrics = GatewayMetrics(runtime_metrics)
    in_flight, queued = runtime_metrics.in_flight.labels(NAME), runtime_metrics.queued.labels(NAME)

    def admission_changed(running: int, waiting: int) -> None:
        in_flight.set(running)
        queued.set(waiting)

    admission = Admission(config.limits, admission_changed)
    catalog = Catalog()
    pod_loads = PodLoads(catalog)
    scaler = Scaler(
        kube, catalog, metrics, config.hold_timeout_s, pod_active_at=pod_loads.active_at.get
    )
    upstreams = Upstreams(config.response_timeout_s)
    forwarder = Forwarder(
        catalog,
        scaler,
        upstreams,
        admission,
        metrics,
        config.bound_factor,
        pod_loads,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await synced(kube, catalog, config.namespace)
        tasks = [
            asyncio.create_task(watch_all(kube, catalog, config.namespace)),
            asyncio.create_task(scaler.run_idle()),
            asyncio.create_task(_prune(catalog, upstreams)),
            asyncio.create_task(pod_loads.run()),
        ]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await kube.close()
        # aiohttp closes TLS transports on later loop turns (its documented graceful close).
        await asyncio.sleep(0.25)

    app = api_app("modelkube gateway", lifespan)
    app.state.runtime = ServingState(
        model_name=NAME, admission=admission, metrics=runtime_metrics, api_keys=config.api_keys
    )
    app.state.forwarder = forwarder
    app.state.max_body_bytes = config.max_body_bytes
    # Set by the native front it serves behind: only then is its tried header believed.
    app.state.behind_front = False
    app.state.scaler = scaler
    app.include_router(routes.router)
    app.include_router(ops.router)
    install_error_handlers(app)
    app.add_middleware(
        RequestAccounting,
        metrics=runtime_metrics,
        model=NAME,
        max_body_bytes=config.max_body_bytes,
    )
    accounting = RequestAccounting(
        Dispatch(routes.handlers),
        metrics=runtime_metrics,
        model=NAME,
        max_body_bytes=config.max_body_bytes,
    )
    return FastPath(app, accounting, frozenset(routes.handlers))


async def _prune(catalog: Catalog, upstreams: Upstreams) -> None:
    while True:
        await asyncio.sleep(PRUNE_S)
        upstreams.keep(catalog.all_endpoints())
