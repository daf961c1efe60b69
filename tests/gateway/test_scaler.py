"""The scaler's idle check: a service is idle only with no request in flight, held ones too."""

import asyncio
from typing import cast

import pytest
from modelkube_operator.k8s.client import Kube

from modelkube_serving.gateway.catalog import Catalog, ModelServiceView
from modelkube_serving.gateway.metrics import GatewayMetrics
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
