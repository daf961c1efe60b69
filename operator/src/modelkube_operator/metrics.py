"""Every metric the operator exports. The chart's dashboards and alerts use these names.

Reconciles are counted where the handlers call the reconcilers. The per-resource gauges are
computed at scrape time from the operator's in-memory index of its custom resources (kopf's
`owners` index), so they cost nothing per event and need no API call. /metrics is served on
the operator's own event loop, so a scrape never reads the index while kopf writes it.
"""

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

OPERATOR = "modelkube_operator"
RECONCILES_TOTAL = f"{OPERATOR}_reconciles_total"
RECONCILE_DURATION = f"{OPERATOR}_reconcile_duration_seconds"
RECONCILES_IN_PROGRESS = f"{OPERATOR}_reconciles_in_progress"
RECONCILE_ERRORS = f"{OPERATOR}_reconcile_errors_total"
OUT_OF_SYNC = f"{OPERATOR}_out_of_sync_resources"
MS_REPLICAS = "modelkube_modelservice_replicas"
MS_READY_REPLICAS = "modelkube_modelservice_ready_replicas"
MS_DESIRED_REPLICAS = "modelkube_modelservice_desired_replicas"
MS_CONDITION = "modelkube_modelservice_condition"
FTJ_PROGRESS = "modelkube_finetunejob_progress_ratio"
FTJ_TRAIN_LOSS = "modelkube_finetunejob_train_loss"
FTJ_VALIDATION_LOSS = "modelkube_finetunejob_validation_loss"
FTJ_SINCE_PROGRESS = "modelkube_finetunejob_seconds_since_progress"
FTJ_CONDITION = "modelkube_finetunejob_condition"
KINDS = ("ModelService", "FineTuneJob")
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
reconciles = Counter(
    RECONCILES_TOTAL,
    "Reconciles run, by kind and result (success or error; kopf retries an error).",
    ["kind", "result"],
    registry=REGISTRY,
)
reconcile_duration = Histogram(
    RECONCILE_DURATION,
    "Seconds a reconcile took, waiting for its resource's lock included.",
    ["kind"],
    buckets=_DURATION_BUCKETS,
    registry=REGISTRY,
)
in_progress = Gauge(
    RECONCILES_IN_PROGRESS,
    "Reconciles running now, or waiting for another reconcile of the same resource.",
    ["kind"],
    registry=REGISTRY,
)
errors = Counter(
    RECONCILE_ERRORS,
    "Reconciles that raised, by kind and exception class.",
    ["kind", "error"],
    registry=REGISTRY,
)
out_of_sync = Gauge(
    OUT_OF_SYNC,
    "Resources the last resync pass found out of sync with their spec or children.",
    ["kind"],
    registry=REGISTRY,
)
for _kind in KINDS:  # every series exists from the start, so rate() and alerts see zeros
    reconciles.labels(_kind, "success")
    reconciles.labels(_kind, "error")
    reconcile_duration.labels(_kind)
    in_progress.labels(_kind)
    out_of_sync.labels(_kind)


@contextmanager
def reconciling(kind: str) -> Iterator[None]:
    """Count one reconcile of `kind`: in progress while it runs, then its result and time."""
    started = time.perf_counter()
    in_progress.labels(kind).inc()
    try:
        yield
    except Exception as exc:
        reconciles.labels(kind, "error").inc()
        errors.labels(kind, type(exc).__name__).inc()
        raise
    else:
        reconciles.labels(kind, "success").inc()
    finally:
        in_progress.labels(kind).dec()
        reconcile_duration.labels(kind).observe(time.perf_counter() - started)


def count_out_of_sync(stale: Iterable[Mapping[str, Any]]) -> None:
    kinds = [body["kind"] for body in stale]
    for kind in KINDS:
        out_of_sync.labels(kind).set(kinds.count(kind))


Owners = Mapping[Any, Iterable[Mapping[str, Any]]]


class ResourceCollector:
    """Per-resource gauges read from the owners index (kopf's, or any mapping of key to
    bodies) when Prometheus scrapes."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.owners: Owners = {}
        self.clock = clock

    def describe(self) -> list[Metric]:
        return []  # its series come and go with the resources

    def collect(self) -> list[Metric]:
        bodies = [body for store in list(self.owners.values()) for body in store]
        services = [b for b in bodies if b.get("kind") == "ModelService"]
        jobs = [b for b in bodies if b.get("kind") == "FineTuneJob"]
        return [*_modelservice_metrics(services), *_finetunejob_metrics(jobs, self.clock())]


resources = ResourceCollector()
REGISTRY.register(resources)


def _ids(body: Mapping[str, Any]) -> list[str]:
    meta = body.get("metadata") or {}
    return [meta.get("namespace") or "", meta.get("name") or ""]


def _gauge(name: str, doc: str, kind: str, extra: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=["namespace", kind, *extra])


def _conditions(family: GaugeMetricFamily, body: Mapping[str, Any]) -> None:
    """kube-state-metrics' style: one series per status, 1 on the condition's current one."""
    for cond in (body.get("status") or {}).get("conditions") or []:
        current = str(cond.get("status", "Unknown")).lower()
        for status in ("true", "false", "unknown"):
            labels = [*_ids(body), str(cond.get("type", "")), status]
            family.add_metric(labels, float(current == status))


def _modelservice_metrics(services: list[Mapping[str, Any]]) -> list[Metric]:
    kind = "modelservice"
    replicas = _gauge(MS_REPLICAS, "Pods of the ModelService's runtime Deployment.", kind)
    ready = _gauge(MS_READY_REPLICAS, "Runtime pods ready to serve.", kind)
    desired = _gauge(
        MS_DESIRED_REPLICAS,
        "Replicas the spec asks for: spec.replicas, or autoscaling.minReplicas when autoscaled.",
        kind,
    )
    condition = _gauge(
        MS_CONDITION, "status.conditions: 1 for the current status.", kind, ["condition", "status"]
    )
    for body in services:
        spec, status = body.get("spec") or {}, body.get("status") or {}
        scaling = spec.get("autoscaling")
        wanted = scaling.get("minReplicas", 1) if scaling else spec.get("replicas", 1)
        replicas.add_metric(_ids(body), float(status.get("replicas", 0)))
        ready.add_metric(_ids(body), float(status.get("readyReplicas", 0)))
        desired.add_metric(_ids(body), float(wanted))
        _conditions(condition, body)
    return [replicas, ready, desired, condition]


def _finetunejob_metrics(jobs: list[Mapping[str, Any]], now: float) -> list[Metric]:
    kind = "finetunejob"
    progress = _gauge(FTJ_PROGRESS, "Iterations done over iterations planned (0 to 1).", kind)
    train = _gauge(FTJ_TRAIN_LOSS, "The trainer's latest training loss.", kind)
    validation = _gauge(FTJ_VALIDATION_LOSS, "The trainer's latest validation loss.", kind)
    since = _gauge(
        FTJ_SINCE_PROGRESS,
        "Seconds since the trainer last reported progress (since the start before its first).",
        kind,
    )
    condition = _gauge(
        FTJ_CONDITION, "status.conditions: 1 for the current status.", kind, ["condition", "status"]
    )
    for body in jobs:
        status = body.get("status") or {}
        report = status.get("progress") or {}
        total = report.get("totalIterations") or 0
        if total > 0:
            progress.add_metric(_ids(body), min(1.0, (report.get("iteration") or 0) / total))
        for family, field in ((train, "trainLoss"), (validation, "validationLoss")):
            value = _number(report.get(field))
            if value is not None:
                family.add_metric(_ids(body), value)
        last = _timestamp(report.get("updateTime")) or _timestamp(status.get("startTime"))
        if last is not None:
            since.add_metric(_ids(body), max(0.0, now - last))
        _conditions(condition, body)
    return [progress, train, validation, since, condition]


def _number(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _timestamp(text: Any) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


async def serve(port: int, host: str = "0.0.0.0") -> web.AppRunner:  # noqa: S104 - scraped in-cluster
    """Serve /metrics on the running event loop; the caller cleans the runner up."""

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner
