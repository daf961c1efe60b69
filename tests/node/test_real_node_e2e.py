"""A real node joins the test control plane and runs real pods (tests/node/conftest.py starts
both; skipped only where containers cannot run). kubelet and kube-proxy are built from their Go
module on first use (see tests/node/node.py)."""

import json
import time

import httpx
import pytest
import yaml

from tests.controlplane.cluster import ControlPlane
from tests.node.images import BUSYBOX_IMAGE
from tests.node.node import NODE_NAME, RealNode
from tests.waiting import wait_until

pytestmark = [pytest.mark.real_node, pytest.mark.timeout(900)]

PAGE = "hello from a real pod"


def _pod(name: str, image: str, command: list[str], port: int) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {
            "nodeName": NODE_NAME,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "web",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": command,
                    "ports": [{"containerPort": port}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": port}, "periodSeconds": 1},
                }
            ],
        },
    }


def _run_until_ready(cp: ControlPlane, node: RealNode, name: str, pod: dict[str, object]) -> str:
    """Apply `pod`, wait until it is Running and Ready; its IP. Prints the time it took."""
    created = time.monotonic()
    cp.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(pod))

    def ready_ip() -> str | None:
        status = json.loads(cp.kubectl("get", "pod", name, "-o", "json").stdout)["status"]
        conditions = status.get("conditions", [])
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        return status.get("podIP") if status.get("phase") == "Running" and ready else None

    try:
        ip: str = wait_until(ready_ip, 120, f"pod {name} to be Running and Ready with an IP")
    except TimeoutError:
        described = cp.kubectl("describe", "pod", name, check=False).stdout
        raise AssertionError(f"{described}\n--- kubelet:\n{node.log('kubelet')}") from None
    print(f"pod {name} Running and Ready {time.monotonic() - created:.1f}s after apply, IP {ip}")
    return ip


def test_a_busybox_pod_runs_on_the_real_node_and_answers_on_its_own_ip(
    node_control_plane: ControlPlane, node: RealNode
) -> None:
    script = (
        f"mkdir -p /tmp/www && echo '{PAGE}' > /tmp/www/index.html"
        " && exec httpd -f -p 8080 -h /tmp/www"
    )
    pod = _pod("busybox", BUSYBOX_IMAGE, ["/bin/sh", "-c", script], 8080)
    ip = _run_until_ready(node_control_plane, node, "busybox", pod)

    assert ip.startswith("10.213.0.")
    assert httpx.get(f"http://{ip}:8080/", timeout=5).text.strip() == PAGE


def test_kubectl_logs_and_exec_reach_the_pod_through_kubelet(
    node_control_plane: ControlPlane, node: RealNode
) -> None:
    """The API server dials kubelet on the node's InternalIP (TLS both ways, the request
    authorized by the API server) for `kubectl logs` and `exec`."""
    cp = node_control_plane
    script = (
        f"echo 'serving {PAGE}' && echo '{PAGE}' > /tmp/index.html && exec httpd -f -p 8080 -h /tmp"
    )
    _run_until_ready(
        cp, node, "logged", _pod("logged", BUSYBOX_IMAGE, ["/bin/sh", "-c", script], 8080)
    )
    logs = cp.kubectl("logs", "logged", check=False)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.splitlines() == [f"serving {PAGE}"]
    ran = cp.kubectl("exec", "logged", "--", "cat", "/tmp/index.html", check=False)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == PAGE


def test_a_service_cluster_ip_reaches_the_pod_through_kube_proxy(
    node_control_plane: ControlPlane, node: RealNode
) -> None:
    script = f"echo '{PAGE}' > /tmp/index.html && exec httpd -f -p 8080 -h /tmp"
    pod = _pod("behind-service", BUSYBOX_IMAGE, ["/bin/sh", "-c", script], 8080)
    _run_until_ready(node_control_plane, node, "behind-service", pod)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"app": "behind-service"},
            "ports": [{"port": 80, "targetPort": 8080}],
        },
    }
    created = time.monotonic()
    node_control_plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(service))
    cluster_ip = node_control_plane.kubectl(
        "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"
    ).stdout

    def answer() -> str | None:
        try:
            return httpx.get(f"http://{cluster_ip}/", timeout=1).text.strip()
        except httpx.TransportError:
            return None  # kube-proxy has not written the service's rules yet

    assert wait_until(answer, 60, f"an answer on ClusterIP {cluster_ip}") == PAGE
    print(f"ClusterIP {cluster_ip} answered {time.monotonic() - created:.1f}s after apply")
