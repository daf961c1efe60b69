"""The scaler's idle check: a service is idle only with no request in flight, held ones too;
and its holds when the gateway stops."""

import asyncio
from typing import cast

import pytest
from modelkube_operator.k8s.client import Kube

from modelkube_serving.errors import NoReadyReplica
from modelkube_serving.gateway.catalog import Catalog, ModelServiceView
from modelkube_serving.gateway.metrics import GATEWAY_HOLDS, GatewayMetrics
from modelkube_serving.gateway.scaler import Scaler
from modelkube_serving.metrics import RuntimeMetrics


@pytest.mark.asyncio
async def test_a_request_held_through_a_long_cold_start_keeps_its_service_awake() -> None:
    now = [0.0]
    # Woken already (replicas 1), no ready endpoint yet: the pod is still starting, so the
    # hold patches nothing and the API server is never called.
    service = ModelServiceView("ns", "other", (), 1, True, 10)
    catalog = Catalog(services={service.key: service})
    metrics = GatewayMetrics(RuntimeMetrics())
    scaler = Scaler(cast(Kube, None), catalog, metrics, hold_timeout_s=600, clock=lambda: now[0])
    assert scaler.idle() == []  # its idle time starts now
    hold = asyncio.create_task(scaler.ready_endpoints(service, "other"))
    await asyncio.sleep(0)  # the request is held
    now[0] = 100.0  # ten times its idleSeconds later, the pod still starting
    assert scaler.idle() == []
    hold.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hold
    now[0] = 110.0
    assert scaler.idle() == [service]  # the client gave up: idle again, idleSeconds after


@pytest.mark.asyncio
async def test_a_stopping_gateway_answers_held_and_later_holds_with_503() -> None:
    service = ModelServiceView("ns", "other", (), 1, True, 10)
    catalog = Catalog(services={service.key: service})
    metrics = GatewayMetrics(RuntimeMetrics())
    scaler = Scaler(cast(Kube, None), catalog, metrics, hold_timeout_s=600)
    hold = asyncio.create_task(scaler.ready_endpoints(service, "other"))
    await asyncio.sleep(0)  # the request is held
    scaler.stop_holding()
    for waiting in (hold, scaler.ready_endpoints(service, "other")):
        with pytest.raises(NoReadyReplica, match="shutting down") as raised:
            await waiting
        assert raised.value.headers() == {"Retry-After": "1"}
    samples = {"model": "other", "outcome": "shutdown"}
    assert metrics.runtime.registry.get_sample_value(GATEWAY_HOLDS, samples) == 2


def test_a_service_whose_pods_report_requests_is_not_idle() -> None:
    """Clients of the ModelService's own Service (or another gateway replica) keep it awake:
    the pods' reports count as activity, not only this gateway's requests."""
    now = [0.0]
    pod = "10.0.0.7:8000"
    service = ModelServiceView("ns", "other", (), 1, True, 10)
    catalog = Catalog(
        services={service.key: service}, slices={("ns", "other-x"): ("other", (pod,))}
    )
    active_at: dict[str, float] = {}
    metrics = GatewayMetrics(RuntimeMetrics())
    scaler = Scaler(
        cast(Kube, None),
        catalog,
        metrics,
        hold_timeout_s=600,
        clock=lambda: now[0],
        pod_active_at=active_at.get,
    )
    assert scaler.idle() == []  # its idle time starts now
    now[0] = active_at[pod] = 9.0  # the pod served a request that did not come through here
    now[0] = 15.0
    assert scaler.idle() == []
    now[0] = 19.0
    assert scaler.idle() == [service]
