"""One round: a fresh namespace and operator, N ModelServices applied at once, measured."""

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.operator.config import Plan
from bench.operator.logscan import scan
from bench.operator.manifests import modelservices_yaml
from bench.operator.procfs import PeakSampler, cpu_seconds, hwm_mb, rss_mb
from bench.operator.stats import creation_gaps_s, summary
from bench.operator.timeline import Timeline, gaps_ms, latest, since_ms
from bench.operator.watcher import Watcher
from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import OperatorProcess

WARMUP_S = 2.0  # after liveness, so the operator's watches are up before t0
POLL_S = 0.05
MS_PATH = "/apis/modelkube.io/v1alpha1/namespaces/{ns}/modelservices"
DEPLOY_PATH = "/apis/apps/v1/namespaces/{ns}/deployments"
SERVICE_PATH = "/api/v1/namespaces/{ns}/services"


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


@dataclass
class RoundResult:
    count: int
    namespace: str
    operator_log: str
    complete: bool = False
    error: str | None = None
    apply_s: float | None = None
    to_all_modelservices_s: float | None = None
    to_all_deployments_s: float | None = None
    to_all_children_s: float | None = None
    to_all_ready_s: float | None = None
    reconcile_ms: dict[str, Any] = field(default_factory=dict)  # MS seen → Deployment seen
    from_t0_ms: dict[str, Any] = field(default_factory=dict)  # t0 → Deployment seen
    ready_ms: dict[str, Any] = field(default_factory=dict)  # MS seen → Ready seen
    to_all_deployments_ready_s: float | None = None  # the kube controllers and kwok's share
    status_lag_ms: dict[str, Any] = field(default_factory=dict)  # Deployment ready → MS Ready
    server_gap_s: dict[str, Any] = field(default_factory=dict)  # creationTimestamps, 1 s
    seen: dict[str, int] = field(default_factory=dict)
    verified: dict[str, int] = field(default_factory=dict)
    operator_rss_idle_mb: float | None = None
    operator_rss_peak_mb: float | None = None  # sampled every 100 ms, t0 → all Ready
    operator_hwm_mb: float | None = None  # VmHWM: the kernel's peak since the process began
    operator_cpu_s: float | None = None  # t0 → all Ready
    cpu_ms_per_object: float | None = None
    apiserver_rss_peak_mb: float | None = None
    rss_samples: int = 0
    events: dict[str, int] = field(default_factory=dict)  # watch events, t0 -> all Ready
    settle_s: float = 0.0
    settle_events: dict[str, int] = field(default_factory=dict)  # after all Ready
    settle_operator_cpu_s: float | None = None
    log_findings: dict[str, object] = field(default_factory=dict)


def apply_manifests(cp: ControlPlane, text: str, timeout_s: float) -> None:
    result = subprocess.run(
        [
            str(cp.bins["kubectl"]),
            f"--kubeconfig={cp.admin_kubeconfig}",
            "apply",
            "--server-side",
            "-f",
            "-",
        ],
        input=text,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout_s,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl apply failed ({result.returncode}): {result.stderr[-1000:]}")


def list_json(cp: ControlPlane, kind: str, namespace: str) -> list[dict[str, Any]]:
    out = cp.kubectl("get", kind, "-n", namespace, "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def ready_count(modelservices: list[dict[str, Any]]) -> int:
    return sum(
        any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (ms.get("status") or {}).get("conditions") or []
        )
        for ms in modelservices
    )


class Round:
    def __init__(self, cp: ControlPlane, kubeconfig: Path, count: int, plan: Plan) -> None:
        self.cp, self.count, self.plan = cp, count, plan
        namespace = f"bench-{count}"
        log_path = (plan.log_dir / f"operator-{namespace}.log").resolve()
        self.result = RoundResult(count, namespace, str(log_path))
        self.timeline = Timeline()
        self.operator = OperatorProcess(kubeconfig, log_path, namespaces=namespace)
        self.watchers: list[Watcher] = []
        self.t0 = 0.0

    @property
    def ns(self) -> str:
        return self.result.namespace

    def run(self) -> RoundResult:
        log(f"round {self.count}: namespace {self.ns}, operator log {self.result.operator_log}")
        Path(self.result.operator_log).unlink(missing_ok=True)
        try:
            self._prepare()
            self._measure()
            self._collect()
            if self.result.complete:
                self._settle()
        except Exception as exc:
            self.result.error = f"{type(exc).__name__}: {exc}"[:2000]
            log(f"round {self.count} failed: {self.result.error}")
        finally:
            for watcher in self.watchers:
                watcher.stop()
            self.operator.stop()
        self.result.log_findings = scan(Path(self.result.operator_log)).as_dict()
        return self.result

    def _prepare(self) -> None:
        self.cp.kubectl("create", "namespace", self.ns)
        self.operator.start()
        time.sleep(WARMUP_S)
        self.result.operator_rss_idle_mb = rss_mb(self.pid)
        paths = (MS_PATH, DEPLOY_PATH, SERVICE_PATH)
        handlers = (
            self.timeline.on_modelservice,
            self.timeline.on_deployment,
            self.timeline.on_service,
        )
        for path, handler in zip(paths, handlers, strict=True):
            self.watchers.append(Watcher(self.cp, path.format(ns=self.ns), handler).start())

    @property
    def pid(self) -> int:
        assert self.operator.proc is not None
        return self.operator.proc.pid

    def _measure(self) -> None:
        text = modelservices_yaml(self.ns, self.count)
        pids = {"operator": self.pid, "kube-apiserver": self.cp.procs["kube-apiserver"].pid}
        sampler = PeakSampler(pids).start()
        cpu0 = cpu_seconds(self.pid)
        self.t0 = time.monotonic()
        try:
            apply_manifests(self.cp, text, self.plan.timeout_s)
            self.result.apply_s = time.monotonic() - self.t0
            log(f"round {self.count}: kubectl apply returned after {self.result.apply_s:.2f} s")
            self.result.complete = self._wait_all(self.t0 + self.plan.timeout_s)
        finally:
            cpu1 = cpu_seconds(self.pid)
            sampler.stop()
        self._record_resources(sampler, cpu0, cpu1)

    def _done(self) -> bool:
        t = self.timeline
        return min(len(t.ready), len(t.deployments), len(t.services)) >= self.count

    def _wait_all(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if self._done():
                return True
            if self.operator.proc is not None and self.operator.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.operator.proc.returncode}")
            for watcher in self.watchers:
                if watcher.error is not None:
                    raise RuntimeError(f"watch failed: {watcher.error!r}")
            time.sleep(POLL_S)
        log(f"round {self.count}: not all Ready after {self.plan.timeout_s:.0f} s")
        return False

    def _record_resources(
        self, sampler: PeakSampler, cpu0: float | None, cpu1: float | None
    ) -> None:
        r = self.result
        r.operator_rss_peak_mb = sampler.peaks_mb.get("operator")
        r.apiserver_rss_peak_mb = sampler.peaks_mb.get("kube-apiserver")
        r.operator_hwm_mb = hwm_mb(self.pid)
        r.rss_samples = sampler.samples
        if cpu0 is not None and cpu1 is not None:
            r.operator_cpu_s = cpu1 - cpu0
            r.cpu_ms_per_object = r.operator_cpu_s * 1000.0 / self.count

    def _collect(self) -> None:
        r, t, t0 = self.result, self.timeline, self.t0
        r.to_all_modelservices_s = latest(t.modelservices, t0)
        r.to_all_deployments_s = latest(t.deployments, t0)
        r.to_all_ready_s = latest(t.ready, t0)
        children = [v for v in (r.to_all_deployments_s, latest(t.services, t0)) if v is not None]
        r.to_all_children_s = max(children) if children else None
        r.reconcile_ms = summary(gaps_ms(t.deployments, t.modelservices))
        r.from_t0_ms = summary(since_ms(t.deployments, t0))
        r.ready_ms = summary(gaps_ms(t.ready, t.modelservices))
        r.to_all_deployments_ready_s = latest(t.deployments_ready, t0)
        r.status_lag_ms = summary(gaps_ms(t.ready, t.deployments_ready))
        r.events = {kind: len(times) for kind, times in t.events.items()}
        r.seen = {
            "modelservices": len(t.modelservices),
            "deployments": len(t.deployments),
            "services": len(t.services),
            "ready": len(t.ready),
            "deployments_ready": len(t.deployments_ready),
        }
        self._verify()

    def _settle(self) -> None:
        """Everything is Ready: is the operator quiet now, or still churning?"""
        start, cpu0 = time.monotonic(), cpu_seconds(self.pid)
        time.sleep(self.plan.settle_s)
        cpu1 = cpu_seconds(self.pid)
        self.result.settle_s = time.monotonic() - start
        self.result.settle_events = self.timeline.events_after(start)
        if cpu0 is not None and cpu1 is not None:
            self.result.settle_operator_cpu_s = cpu1 - cpu0
        log(
            f"round {self.count}: {self.result.settle_s:.1f} s after all Ready: "
            f"events {self.result.settle_events}, operator CPU "
            f"{self.result.settle_operator_cpu_s or 0:.2f} s"
        )

    def _verify(self) -> None:
        """Cross-check the watches with lists, and take the server-side creation gaps."""
        modelservices = list_json(self.cp, "modelservices", self.ns)
        deployments = list_json(self.cp, "deployments", self.ns)
        self.result.verified = {
            "modelservices": len(modelservices),
            "deployments": len(deployments),
            "ready": ready_count(modelservices),
        }
        self.result.server_gap_s = summary(creation_gaps_s(deployments, modelservices))
