"""`helm install` of the chart with the operator image as a real pod on the real node: under its
ServiceAccount and ClusterRole, in a namespace enforcing Pod Security "restricted", its probes
passing and its metrics live, and a ModelService it reconciles served by real runtime pods.
"""

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.chart.helm import CHART, RELEASE, helm
from tests.controlplane.cluster import ControlPlane
from tests.node.node import NODE_NAME, RealNode
from tests.operator.harness import get_json
from tests.waiting import wait_until

pytestmark = [pytest.mark.real_node, pytest.mark.timeout(1500)]

NAMESPACE = "modelkube-chart"
WATCHED = "chart-serving"
OPERATOR = "app.kubernetes.io/component=operator"


def _restricted(name: str) -> str:
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    return yaml.safe_dump(doc)


@pytest.fixture(scope="module")
def installed(
    node_control_plane: ControlPlane, node: RealNode, operator_image: str, runtime_image: str
) -> Iterator[ControlPlane]:
    cp = node_control_plane
    for name in (NAMESPACE, WATCHED):
        cp.kubectl("apply", "-f", "-", stdin=_restricted(name))
    started = time.monotonic()
    args = ["install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--wait", "--timeout", "300s"]
    # The CRDs are the control plane's already (helm would not adopt them); this release serves
    # its own namespace, so it leaves the other tests' ModelServices alone.
    args += ["--set", "crds.enabled=false", "--set", f"watch.namespaces={{{WATCHED}}}"]
    try:
        helm(*args, kubeconfig=cp.admin_kubeconfig)
    except AssertionError:
        print(cp.kubectl("describe", "pods", "-n", NAMESPACE, check=False).stdout[-5000:])
        print(node.log("kubelet"))
        raise
    print(f"helm install --wait: operator pod Ready {time.monotonic() - started:.1f}s after")
    yield cp
    helm("uninstall", RELEASE, "--namespace", NAMESPACE, kubeconfig=cp.admin_kubeconfig)
    cp.kubectl("delete", "namespace", WATCHED, "--wait=false", check=False)


def _operator_pod(cp: ControlPlane) -> dict[str, Any]:
    pods = (get_json(cp, "pods", "-n", NAMESPACE, "-l", OPERATOR) or {}).get("items", [])
    [pod] = [p for p in pods if "deletionTimestamp" not in p["metadata"]]
    return dict(pod)


def test_the_operator_runs_as_a_real_pod_with_live_probes_and_metrics(
    installed: ControlPlane, operator_image: str
) -> None:
    pod = _operator_pod(installed)
    assert pod["spec"]["nodeName"] == NODE_NAME
    assert pod["spec"]["serviceAccountName"] == RELEASE
    [container] = pod["spec"]["containers"]
    assert container["image"] == operator_image
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    [status] = pod["status"]["containerStatuses"]
    assert status["ready"] is True and status["restartCount"] == 0
    ip = pod["status"]["podIP"]
    metrics = httpx.get(f"http://{ip}:8080/metrics", timeout=5).text
    assert "modelkube_" in metrics


def test_helm_test_runs_its_pod_for_real(installed: ControlPlane) -> None:
    """`helm test`'s pod resolves the operator's Service by name (CoreDNS) and gets 200."""
    out = helm(
        "test",
        RELEASE,
        "--namespace",
        NAMESPACE,
        "--timeout",
        "180s",
        kubeconfig=installed.admin_kubeconfig,
    )
    assert "Phase:          Succeeded" in out, out


def test_the_charts_operator_serves_a_modelservice_on_real_pods(
    installed: ControlPlane, node: RealNode
) -> None:
    cp = installed
    ms = {
        "apiVersion": "modelkube.io/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": "tiny", "namespace": WATCHED},
        "spec": {
            "model": {"uri": "builtin://tiny"},
            "replicas": 1,
            "runtime": {"resources": {"requests": {"cpu": "250m", "memory": "512Mi"}}},
        },
    }
    cp.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(ms))

    def ready() -> dict[str, Any] | None:
        got = get_json(cp, "modelservice", "tiny", "-n", WATCHED)
        return got if (got or {}).get("status", {}).get("readyReplicas") == 1 else None

    try:
        wait_until(ready, 180, "the chart's operator to make tiny Ready")
    except TimeoutError:
        print(cp.kubectl("get", "ms,all,events", "-n", WATCHED, "-o", "yaml", check=False).stdout)
        name = _operator_pod(cp)["metadata"]["name"]
        print(cp.kubectl("logs", "-n", NAMESPACE, name, "--tail=60", check=False).stdout)
        raise
    service = get_json(cp, "service", "tiny", "-n", WATCHED)
    assert service is not None
    url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}/v1"
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=3, timeout=30)
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert reply.usage is not None and reply.usage.completion_tokens > 0
