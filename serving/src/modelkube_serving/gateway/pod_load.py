"""Each pod's load for routing: this gateway's own requests in flight there, and the others'
that the pod reports, so that every gateway replica bounds a pod by the same count.

A gateway knows its own in-flight requests at once, but not what another gateway replica, or a
client that reaches the pod's Service directly, has sent the same pod: with two gateways each
could fill a pod up to the bound by itself. Every pod's runtime exports the model-server
protocol's gauges for endpoint pickers (vllm:num_requests_running and
vllm:num_requests_waiting); the gateway reads them from every ready pod every POLL_S. What the
pod counts beyond this gateway's own requests is the others' load, and a pod's load is the
gateway's own count, exact and immediate, plus the others', up to POLL_S old. The same reports
say when each pod last served anyone (its request count moved, or a request is in flight), which
the scaler weighs before it scales a model to zero.

The gateway's own part of a report is taken as the most of its requests in flight at that pod
while the report was on its way: a request that ended meanwhile is still in the pod's count, and
taking the count at the report's arrival instead would read it as another client's, keeping the
pod looking busier than it is until the next report (a first form, max(own, reported), had
conversations leave their pods more often under the bench's load: 81% of later turns found
their history, against 87-91% before it).
"""

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from modelkube_native import UpstreamClient, UpstreamError

from modelkube_serving.gateway.catalog import Catalog
from modelkube_serving.metrics import (
    REQUESTS_TOTAL,
    VLLM_REQUESTS_RUNNING,
    VLLM_REQUESTS_WAITING,
)

log = logging.getLogger("modelkube.gateway")

POLL_S = 0.25
TIMEOUT_S = 1.0  # a pod slower than this to answer keeps no reported load until it answers
_GAUGES = (VLLM_REQUESTS_RUNNING, VLLM_REQUESTS_WAITING)


@dataclass(frozen=True)
class PodReport:
    """What one /metrics text says, read in one pass."""

    # Running plus waiting requests, summed over their label sets; None: the pod exports
    # neither gauge (a runtime with --no-vllm-metrics).
    load: int | None
    # The pod's API requests so far (modelkube_requests_total, every label set); None: none.
    served: float | None


def read_report(exposition: str) -> PodReport:
    sums = _sums(exposition, (*_GAUGES, REQUESTS_TOTAL))
    gauges = [sums[name] for name in _GAUGES if name in sums]
    return PodReport(round(sum(gauges)) if gauges else None, sums.get(REQUESTS_TOTAL))


def _sums(exposition: str, names: tuple[str, ...]) -> dict[str, float]:
    """Each of `names` found, summed over its label sets (bad or negative samples skipped)."""
    sums: dict[str, float] = {}
    for line in exposition.splitlines():
        if not line.startswith(names):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name not in names:
            continue
        try:
            value = float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue
        if math.isfinite(value) and value >= 0:
            sums[name] = sums.get(name, 0.0) + value
    return sums


class PodLoads:
    """In-flight requests per pod: this gateway's own, and the others' the pods report."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.own: dict[str, int] = {}  # this gateway's requests in flight, by pod
        self.others: dict[str, int] = {}  # what each pod reported beyond them
        self._peak: dict[str, int] = {}  # the most of `own` since the reports were asked for
        # When each pod last served anyone (time.monotonic): a request in flight, or its
        # request count moved since the report before. Scale to zero weighs it, so a model
        # whose clients reach its Service directly is not taken away from them.
        self.active_at: dict[str, float] = {}
        self._served: dict[str, float] = {}
        self._clients: dict[str, UpstreamClient] = {}

    def of(self, endpoint: str) -> int:
        return self.own.get(endpoint, 0) + self.others.get(endpoint, 0)

    def started(self, endpoint: str) -> None:
        now = self.own.get(endpoint, 0) + 1
        self.own[endpoint] = now
        if now > self._peak.get(endpoint, 0):
            self._peak[endpoint] = now

    def finished(self, endpoint: str) -> None:
        left = self.own.get(endpoint, 1) - 1
        if left > 0:
            self.own[endpoint] = left
        else:
            self.own.pop(endpoint, None)

    async def run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # routing goes on with the gateway's own counts meanwhile
                log.exception("reading the pods' loads failed")
                self.others = {}
            await asyncio.sleep(POLL_S)

    async def poll(self) -> None:
        endpoints = sorted(self.catalog.all_endpoints())
        for gone in set(self._clients) - set(endpoints):
            del self._clients[gone]
        self.reports_asked()
        texts = await asyncio.gather(*(self._read(e) for e in endpoints))
        self.reports_came(dict(zip(endpoints, texts, strict=True)), time.monotonic())

    def reports_asked(self) -> None:
        self._peak = dict(self.own)

    def reports_came(self, reports: Mapping[str, str | None], now: float) -> None:
        """The pods' /metrics texts (None: no answer). The others' loads become what each pod
        counted beyond the most of this gateway's requests in flight there since the reports
        were asked for; a pod with a request in flight, or whose request count moved since its
        last report, was active `now`."""
        others = {}
        for endpoint, text in reports.items():
            report = PodReport(None, None) if text is None else read_report(text)
            load, served = report.load, report.served
            beyond = (load or 0) - self._peak.get(endpoint, 0)
            if beyond > 0:
                others[endpoint] = beyond
            if served is None:
                continue
            if load or served != self._served.get(endpoint, served):
                self.active_at[endpoint] = now
            self._served[endpoint] = served
        self.others = others
        for gone in set(self._served) - set(reports):
            del self._served[gone]
            self.active_at.pop(gone, None)

    async def _read(self, endpoint: str) -> str | None:
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
        return answer.body.decode(errors="replace")
