"""A real node joins the test control plane and runs a real pod (opt-in: MODELKUBE_REAL_NODE=1).

Needs root, Debian's containerd, runc, containernetworking-plugins, busybox-static and gcc;
kubelet is built from its Go module on first use (see tests/node/node.py).
"""

import json
import os
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml

from tests.controlplane.cluster import ControlPlane
from tests.node.images import BUSYBOX_IMAGE
from tests.node.node import NODE_NAME, RealNode
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.real_node,
    pytest.mark.skipif(
        os.environ.get("MODELKUBE_REAL_NODE") != "1",
        reason="a real node needs root and containerd: set MODELKUBE_REAL_NODE=1",
    ),
]

PAGE = "hello from a real pod"


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("control-plane")).start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="module")
def node(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealNode]:
    started = time.monotonic()
    real = RealNode(tmp_path_factory.mktemp("node"), control_plane).start()
    print(f"node Ready {time.monotonic() - started:.1f}s after start")
    try:
        yield real
    finally:
        real.stop()


def _pod(name: str) -> dict[str, object]:
    script = (
        f"mkdir -p /tmp/www && echo '{PAGE}' > /tmp/www/index.html"
        " && exec httpd -f -p 8080 -h /tmp/www"
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE_NAME,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "web",
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["/bin/sh", "-c", script],
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                }
            ],
        },
    }


def test_a_pod_runs_on_the_real_node_and_answers_on_its_own_ip(
    control_plane: ControlPlane, node: RealNode
) -> None:
    created = time.monotonic()
    control_plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(_pod("web")))

    def ready_ip() -> str | None:
        pod = json.loads(control_plane.kubectl("get", "pod", "web", "-o", "json").stdout)
        status = pod["status"]
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
        )
        return status.get("podIP") if status.get("phase") == "Running" and ready else None

    try:
        ip = wait_until(ready_ip, 120, "the pod to be Running and Ready with an IP")
    except TimeoutError:
        described = control_plane.kubectl("describe", "pod", "web", check=False).stdout
        raise AssertionError(f"{described}\n--- kubelet:\n{node.log('kubelet')}") from None
    print(f"pod Running and Ready {time.monotonic() - created:.1f}s after kubectl apply, IP {ip}")

    assert ip.startswith("10.213.0.")
    assert httpx.get(f"http://{ip}:8080/", timeout=5).text.strip() == PAGE
