"""The HPA scales a ModelService on in-flight requests, through a real metrics pipeline.

The operator (a process under its own ServiceAccount) renders the HPA on the Pods metric
modelkube_requests_in_flight; Prometheus scrapes the runtime's real pods on the real node;
prometheus-adapter, built from its module and configured with the rule file the README documents,
serves the metric to kube-controller-manager's HPA controller through the aggregation layer. Load
from the official `openai` client raises the replicas, idle lowers them. The reaction times are
printed for the closing note, never asserted.
"""

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from modelkube_operator.builders.scaling import IN_FLIGHT_METRIC

from tests.controlplane.cluster import ControlPlane
from tests.node.metrics_pipeline import PodDiscovery, PrometheusAdapter
from tests.node.node import RealNode
from tests.observability.prometheus import Prometheus
from tests.operator.harness import OperatorProcess, get_json, operator_kubeconfig
from tests.waiting import wait_until

pytestmark = [pytest.mark.real_node, pytest.mark.timeout(900)]

NAMESPACE = "real-hpa"
NAME = "tiny"
TARGET = 2  # in-flight requests per pod
MAX_REPLICAS = 3
CLIENTS = 8  # target x max replicas and more: the HPA wants every replica it may have
MAX_TOKENS = 512  # long streams: each client keeps a request in flight nearly all the time


@pytest.fixture(scope="module")
def operator(node_control_plane: ControlPlane, runtime_image: str) -> Iterator[OperatorProcess]:
    cp = node_control_plane
    proc = OperatorProcess(operator_kubeconfig(cp), cp.workdir / "operator-hpa.log", "real-*")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def prometheus(
    node_control_plane: ControlPlane, node: RealNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    workdir = tmp_path_factory.mktemp("prometheus")
    pods = PodDiscovery(node_control_plane, NAMESPACE, workdir / "pods.json").start()
    prom = Prometheus(workdir, [], scrape_configs=[pods.scrape_config()]).start()
    yield prom
    prom.stop()
    pods.stop()


@pytest.fixture(scope="module")
def adapter(
    node_control_plane: ControlPlane,
    prometheus: Prometheus,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrometheusAdapter]:
    workdir: Path = tmp_path_factory.mktemp("prometheus-adapter")
    started = time.monotonic()
    proc = PrometheusAdapter(workdir, node_control_plane, prometheus.url).start()
    print(f"prometheus-adapter Available {time.monotonic() - started:.1f}s after start")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def served(
    node_control_plane: ControlPlane,
    operator: OperatorProcess,
    prometheus: Prometheus,
    adapter: PrometheusAdapter,
) -> Iterator[str]:
    """The autoscaled ModelService answering through its ClusterIP, its HPA reading the metric."""
    cp = node_control_plane
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    cp.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(namespace))
    cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=yaml.safe_dump(_modelservice()))
    try:
        service = wait_until(
            lambda: get_json(cp, "service", NAME, "-n", NAMESPACE), 60, "the runtime's Service"
        )
        url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}/v1"
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=10)
        wait_until(lambda: _answers(client), 600, f"an answer through {url}")
        wait_until(lambda: _hpa_reads_metric(cp), 120, "the HPA reading the in-flight metric")
    except (TimeoutError, AssertionError):
        _dump(cp, operator, prometheus, adapter)
        raise
    yield url
    cp.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def _modelservice() -> dict[str, Any]:
    return {
        "apiVersion": "modelkube.io/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"uri": "builtin://tiny"},
            "autoscaling": {
                "minReplicas": 1,
                "maxReplicas": MAX_REPLICAS,
                "metric": "inFlightRequests",
                "target": TARGET,
                "scaleDownDelaySeconds": 10,  # the cluster's default would be 300
            },
            "runtime": {
                "maxConcurrentRequests": 32,
                # Three replicas and the load on a small machine: modest requests.
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
            },
        },
    }


def _answers(client: openai.OpenAI) -> bool:
    try:
        client.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": "hello"}], max_tokens=4
        )
    except (openai.APIConnectionError, openai.APIStatusError):
        return False
    return True


def _hpa(cp: ControlPlane) -> dict[str, Any]:
    return get_json(cp, "hpa", NAME, "-n", NAMESPACE) or {}


def _hpa_reads_metric(cp: ControlPlane) -> bool:
    status = _hpa(cp).get("status", {})
    current = status.get("currentMetrics") or [{}]
    return bool(current[0].get("pods", {}).get("current", {}).get("averageValue") is not None)


def _ready_replicas(cp: ControlPlane) -> int:
    deployment = get_json(cp, "deployment", NAME, "-n", NAMESPACE) or {}
    return int(deployment.get("status", {}).get("readyReplicas", 0))


def _replicas(cp: ControlPlane) -> int:
    deployment = get_json(cp, "deployment", NAME, "-n", NAMESPACE) or {}
    return int(deployment.get("spec", {}).get("replicas", 0))


def test_in_flight_load_scales_the_modelservice_up_and_idle_scales_it_down(
    node_control_plane: ControlPlane, adapter: PrometheusAdapter, served: str
) -> None:
    cp = node_control_plane
    hpa = _hpa(cp)
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == IN_FLIGHT_METRIC
    assert hpa["status"]["desiredReplicas"] == 1
    # The metric the HPA reads, straight from the aggregated API: one item per pod.
    listed = adapter.metric(NAMESPACE, IN_FLIGHT_METRIC)
    assert listed is not None and [i["describedObject"]["kind"] for i in listed["items"]] == ["Pod"]

    load = StreamingLoad(served, CLIENTS)
    started = time.monotonic()
    load.start()
    try:
        desired_at = wait_until(
            lambda: _hpa(cp).get("status", {}).get("desiredReplicas", 1) > 1 and time.monotonic(),
            180,
            "the HPA to want more replicas under load",
        )
        ready_at = wait_until(
            lambda: _ready_replicas(cp) > 1 and time.monotonic(),
            300,
            "a new replica Ready under load",
        )
        peak = _hpa(cp)["status"]
    finally:
        load.stop()
    idle = time.monotonic()
    down_at = wait_until(
        lambda: _hpa(cp).get("status", {}).get("desiredReplicas") == 1 and time.monotonic(),
        180,
        "the HPA to go back to one replica when idle",
    )
    # The HPA's status and the Deployment's scale are two writes: wait for the scale itself.
    wait_until(lambda: _replicas(cp) == 1, 60, "the Deployment scaled back to one replica")
    print(
        f"\nHPA on {IN_FLIGHT_METRIC} (target {TARGET}/pod, {CLIENTS} streaming clients):"
        f" desiredReplicas > 1 {desired_at - started:.1f}s after the load started,"
        f" a new pod Ready {ready_at - started:.1f}s after; at peak desired"
        f" {peak['desiredReplicas']}, current metric"
        f" {peak['currentMetrics'][0]['pods']['current']['averageValue']};"
        f" back to 1 replica {down_at - idle:.1f}s after the load stopped"
        f" ({load.ok} streams answered, {load.failed} failed)"
    )
    assert peak["desiredReplicas"] > 1


class StreamingLoad:
    """`clients` threads streaming long chat completions back to back through the ClusterIP."""

    def __init__(self, url: str, clients: int) -> None:
        self.client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)
        self.ok = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                stream = self.client.chat.completions.create(
                    model=NAME,
                    messages=[{"role": "user", "content": "Tell me a long story."}],
                    max_tokens=MAX_TOKENS,
                    stream=True,
                )
                for _ in stream:
                    if self._stop.is_set():
                        stream.close()  # a disconnect frees the slot at once
                        break
                ok = True
            except openai.OpenAIError:
                ok = False
            with self._lock:
                self.ok += ok
                self.failed += not ok


def _dump(
    cp: ControlPlane,
    operator: OperatorProcess,
    prometheus: Prometheus,
    adapter: PrometheusAdapter,
) -> None:
    print(cp.kubectl("get", "all,events", "-n", NAMESPACE, "-o", "wide", check=False).stdout)
    print(cp.kubectl("describe", "hpa", "-n", NAMESPACE, check=False).stdout)
    print("--- operator:\n" + operator.log())
    print("--- prometheus:\n" + prometheus.log())
    print("--- prometheus-adapter:\n" + adapter.log())
    print("--- kube-controller-manager:\n" + cp.log("kube-controller-manager"))
