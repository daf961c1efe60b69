"""The load each pod reports, read from its /metrics, so that every gateway replica bounds a
pod's load by the same count.

A gateway knows its own in-flight requests at once, but not what another gateway replica, or a
client that reaches the pod's Service directly, has sent the same pod: with two gateways each
could fill a pod up to the bound by itself. Every pod's runtime exports the model-server
protocol's gauges for endpoint pickers (vllm:num_requests_running and
vllm:num_requests_waiting); the gateway reads them from every ready pod every POLL_S. For
routing, a pod's load is the larger of the gateway's own count, exact and immediate, and the
pod's, which counts every client's requests but is up to POLL_S old.
"""

import asyncio
import logging
import math

from modelkube_native import UpstreamClient, UpstreamError

from modelkube_serving.gateway.catalog import Catalog
from modelkube_serving.metrics import VLLM_REQUESTS_RUNNING, VLLM_REQUESTS_WAITING

log = logging.getLogger("modelkube.gateway")

POLL_S = 0.25
TIMEOUT_S = 1.0  # a pod slower than this to answer keeps no reported load until it answers
_GAUGES = (VLLM_REQUESTS_RUNNING, VLLM_REQUESTS_WAITING)


def reported_load(exposition: str) -> int | None:
    """Running plus waiting requests in a pod's Prometheus text, summed over their label sets;
    None when the pod exports neither gauge (a runtime with --no-vllm-metrics)."""
    total, found = 0.0, False
    for line in exposition.splitlines():
        if not line.startswith("vllm:"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name not in _GAUGES:
            continue
        try:
            value = float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue
        if math.isfinite(value) and value >= 0:
            total, found = total + value, True
    return round(total) if found else None


class PodLoads:
    """The load each ready pod reported last; a pod that did not answer has none."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.reported: dict[str, int] = {}
        self._clients: dict[str, UpstreamClient] = {}

    def of(self, endpoint: str) -> int:
        return self.reported.get(endpoint, 0)

    async def run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # routing goes on with the gateway's own counts meanwhile
                log.exception("reading the pods' loads failed")
                self.reported = {}
            await asyncio.sleep(POLL_S)

    async def poll(self) -> None:
        endpoints = sorted(self.catalog.all_endpoints())
        for gone in set(self._clients) - set(endpoints):
            del self._clients[gone]
        loads = await asyncio.gather(*(self._read(e) for e in endpoints))
        self.reported = {e: load for e, load in zip(endpoints, loads, strict=True) if load}

    async def _read(self, endpoint: str) -> int | None:
        client = self._clients.get(endpoint)
        if client is None:
            client = UpstreamClient(
                f"http://{endpoint}",
                connect_timeout_s=TIMEOUT_S,
                response_timeout_s=TIMEOUT_S,
                read_timeout_s=TIMEOUT_S,
                max_retries=0,
                breaker_failures=0,
            )
            self._clients[endpoint] = client
        try:
            answer = await client.arequest("GET", "/metrics")
        except UpstreamError as exc:
            log.debug("no load from %s: %s", endpoint, exc)
            return None
        if answer.status != 200:
            return None
        return reported_load(answer.body.decode(errors="replace"))
