"""The HPA's metrics pipeline for the real node: Prometheus and prometheus-adapter.

Prometheus (Debian's package) scrapes the runtime's pods over the bridge, each series labelled
with `namespace` and `pod` as a ServiceMonitor's job labels it; the pods are found in the API
server by PodDiscovery (Debian's build has no Kubernetes discovery of its own).
prometheus-adapter (built from its Go module) serves them as custom.metrics.k8s.io with the rule
the README documents (charts/modelkube/docs/prometheus-adapter-values.yaml, read as the
prometheus-adapter chart reads it). The adapter is a process on the node's bridge address; the API
server's aggregation layer reaches it through an APIService, a Service and an EndpointSlice of its
own (the API server routes to the endpoint, not the ClusterIP).
"""

import contextlib
import json
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.controlplane.binaries import PROMETHEUS_ADAPTER_MODULE, ensure_binaries
from tests.controlplane.cluster import ControlPlane
from tests.node.node import NODE_IP
from tests.observability.queries import adapter_rules
from tests.processes import stop_process
from tests.serving.runtime_process import free_port
from tests.waiting import wait_until

CUSTOM_METRICS = "custom.metrics.k8s.io"
ADAPTER_NAMESPACE = "monitoring"
ADAPTER_SERVICE = "prometheus-adapter"
# The versions prometheus-adapter serves; the HPA controller takes the preferred one.
VERSIONS = {"v1beta2": 200, "v1beta1": 100}


class PodDiscovery:
    """The runtime pods of a namespace as Prometheus file_sd targets, rewritten once a second.

    Debian's Prometheus has no Kubernetes service discovery (removed for client-go's
    dependencies, its NEWS.Debian says; `kubernetes_sd_configs` is "field not found"), so this
    thread does its job: it lists the pods from the API server and names each Running pod's
    `http` port with the labels a ServiceMonitor's scrape gives it (`namespace`, `pod`), which
    the adapter's rule maps to resources. Prometheus reads the file as it changes (inotify)."""

    def __init__(self, cp: ControlPlane, namespace: str, path: Path) -> None:
        self.cp, self.namespace, self.path = cp, namespace, path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._write([])

    def scrape_config(self) -> dict[str, Any]:
        return {
            "job_name": "modelkube-runtime",
            "file_sd_configs": [{"files": [str(self.path)], "refresh_interval": "1s"}],
        }

    def start(self) -> "PodDiscovery":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        context = ssl.create_default_context(cafile=str(self.cp.ca_file))
        headers = {"Authorization": f"Bearer {self.cp.admin_token}"}
        url = f"{self.cp.server}/api/v1/namespaces/{self.namespace}/pods"
        with httpx.Client(verify=context, headers=headers, timeout=5) as client:
            while not self._stop.wait(1):
                with contextlib.suppress(httpx.HTTPError):
                    self._write(pod_targets(client.get(url).raise_for_status().json()["items"]))

    def _write(self, targets: list[dict[str, Any]]) -> None:
        # Renamed into place: Prometheus never reads half a file.
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(targets))
        partial.rename(self.path)


def pod_targets(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """file_sd target groups: each Running pod's `http` port, labelled namespace and pod."""
    groups = []
    for pod in pods:
        ip = pod.get("status", {}).get("podIP")
        if pod.get("status", {}).get("phase") != "Running" or not ip:
            continue
        ports = [
            port["containerPort"]
            for container in pod["spec"]["containers"]
            for port in container.get("ports", [])
            if port.get("name") == "http"
        ]
        labels = {"namespace": pod["metadata"]["namespace"], "pod": pod["metadata"]["name"]}
        groups += [{"targets": [f"{ip}:{port}"], "labels": labels} for port in ports]
    return groups


@dataclass
class PrometheusAdapter:
    workdir: Path
    cp: ControlPlane
    prometheus_url: str
    binary: Path = field(
        default_factory=lambda: ensure_binaries((PROMETHEUS_ADAPTER_MODULE,))["adapter"]
    )
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> "PrometheusAdapter":
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The chart turns `rules.custom` of its values into the adapter's `rules:`.
        config = self.workdir / "config.yaml"
        config.write_text(yaml.safe_dump({"rules": adapter_rules()}, sort_keys=False))
        kubeconfig = str(self.cp.admin_kubeconfig)
        with (self.workdir / "adapter.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.binary),
                    f"--prometheus-url={self.prometheus_url}",
                    f"--config={config}",
                    # Series are discovered at each relist (default 10 minutes): the pods'
                    # series exist before the HPA asks, but a fresh cluster needs them soon.
                    "--metrics-relist-interval=5s",
                    f"--lister-kubeconfig={kubeconfig}",
                    f"--authentication-kubeconfig={kubeconfig}",
                    f"--authorization-kubeconfig={kubeconfig}",
                    f"--bind-address={NODE_IP}",
                    f"--secure-port={self.port}",
                    f"--cert-dir={self.workdir / 'pki'}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self.cp.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(self._registration()))
            wait_until(self._available, timeout, f"the {CUSTOM_METRICS} APIServices Available")
        except BaseException:
            self.stop()
            raise
        return self

    def _registration(self) -> list[dict[str, Any]]:
        meta = {"name": ADAPTER_SERVICE, "namespace": ADAPTER_NAMESPACE}
        return [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ADAPTER_NAMESPACE}},
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta,
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": self.port}]},
            },
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    **meta,
                    "labels": {
                        "kubernetes.io/service-name": ADAPTER_SERVICE,
                        "endpointslice.kubernetes.io/managed-by": "modelkube-tests",
                    },
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
                "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}],
            },
            *(
                {
                    "apiVersion": "apiregistration.k8s.io/v1",
                    "kind": "APIService",
                    "metadata": {"name": f"{version}.{CUSTOM_METRICS}"},
                    "spec": {
                        "group": CUSTOM_METRICS,
                        "version": version,
                        "service": {**meta, "port": 443},
                        # The adapter's certificate is self-signed, as the chart's default.
                        "insecureSkipTLSVerify": True,
                        "groupPriorityMinimum": 100,
                        "versionPriority": priority,
                    },
                }
                for version, priority in VERSIONS.items()
            ),
        ]

    def _available(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"prometheus-adapter exited:\n{self.log()}")
        for version in VERSIONS:
            result = self.cp.kubectl(
                "get",
                "apiservice",
                f"{version}.{CUSTOM_METRICS}",
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Available')].status}",
                check=False,
            )
            if result.stdout != "True":
                return False
        return True

    def metric(self, namespace: str, name: str) -> dict[str, Any] | None:
        """What the HPA controller reads: the metric for every pod of `namespace`."""
        path = f"/apis/{CUSTOM_METRICS}/v1beta2/namespaces/{namespace}/pods/*/{name}"
        result = self.cp.kubectl("get", "--raw", path, check=False)
        if result.returncode != 0:
            return None
        body: dict[str, Any] = yaml.safe_load(result.stdout)
        return body

    def log(self) -> str:
        return (self.workdir / "adapter.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        # The APIServices go first: an unavailable aggregated API breaks discovery, and with it
        # namespace deletion and the garbage collector, for everything after this test.
        for version in VERSIONS:
            self.cp.kubectl(
                "delete",
                "apiservice",
                f"{version}.{CUSTOM_METRICS}",
                "--ignore-not-found",
                check=False,
            )
        self.cp.kubectl("delete", "namespace", ADAPTER_NAMESPACE, "--wait=false", check=False)
        if self.proc is not None:
            stop_process(self.proc)
