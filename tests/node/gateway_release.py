"""The chart installed the way a user gets the gateway (`gateway.enabled=true`), on the real
node: the operator and `modelkube gateway` as real pods of one release, serving the
ModelServices of one namespace. The real-node gateway tests and `bench.gateway.cold_node` use
it."""

import time
from dataclasses import dataclass
from typing import Any

import yaml

from tests.chart.helm import CHART, helm
from tests.controlplane.cluster import ControlPlane
from tests.node.node import RealNode
from tests.operator.harness import get_json

# Its own release and namespaces: the chart test's release (`modelkube`) may be installed in
# the same session, and `real-*` namespaces belong to the operator process of the other tests.
RELEASE = "gw"
SYSTEM = "gateway-system"
SERVING = "gateway-serving"
GATEWAY = f"{RELEASE}-modelkube-gateway"
SMALL = {"requests": {"cpu": "250m", "memory": "512Mi"}}


def restricted(name: str) -> str:
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    return yaml.safe_dump(doc)


@dataclass(frozen=True)
class Release:
    cp: ControlPlane
    url: str  # the gateway's Service, by ClusterIP (kube-proxy)

    def upgrade(self, *sets: str) -> None:
        """`helm upgrade --wait` with the release's values and `sets` changed: the gateway's
        pod replaced by one with the new flags."""
        args = ["upgrade", RELEASE, str(CHART), "--namespace", SYSTEM, "--reuse-values", "--wait"]
        for item in sets:
            args += ["--set", item]
        helm(*args, kubeconfig=self.cp.admin_kubeconfig)

    def uninstall(self) -> None:
        helm("uninstall", RELEASE, "--namespace", SYSTEM, kubeconfig=self.cp.admin_kubeconfig)
        for name in (SERVING, SYSTEM):
            self.cp.kubectl("delete", "namespace", name, "--wait=false", check=False)


def install(cp: ControlPlane, node: RealNode, *sets: str) -> Release:
    """`helm install --wait` with the gateway on, in front of SERVING's ModelServices."""
    for name in (SYSTEM, SERVING):
        cp.kubectl("apply", "-f", "-", stdin=restricted(name))
    started = time.monotonic()
    args = ["install", RELEASE, str(CHART), "--namespace", SYSTEM, "--wait", "--timeout", "300s"]
    # The CRDs are the control plane's already (helm would not adopt them).
    args += ["--set", "crds.enabled=false", "--set", f"watch.namespaces={{{SERVING}}}"]
    args += ["--set", "gateway.enabled=true", "--set", f"gateway.namespace={SERVING}"]
    for item in sets:
        args += ["--set", item]
    try:
        helm(*args, kubeconfig=cp.admin_kubeconfig)
    except AssertionError:
        print(cp.kubectl("describe", "pods", "-n", SYSTEM, check=False).stdout[-6000:])
        print(node.log("kubelet")[-6000:])
        raise
    print(
        f"helm install --wait: operator and gateway Ready {time.monotonic() - started:.1f}s after"
    )
    service = get_json(cp, "service", GATEWAY, "-n", SYSTEM)
    assert service is not None, f"no Service {GATEWAY}"
    return Release(
        cp, f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    )


def pods(cp: ControlPlane, name: str, namespace: str = SERVING) -> list[dict[str, Any]]:
    """The ModelService `name`'s pods, not being deleted."""
    selector = f"app.kubernetes.io/instance={name}"
    listed = get_json(cp, "pods", "-n", namespace, "-l", selector) or {}
    return [p for p in listed.get("items", []) if "deletionTimestamp" not in p["metadata"]]


def ready(pod: dict[str, Any]) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    return bool(statuses[0].get("ready"))
