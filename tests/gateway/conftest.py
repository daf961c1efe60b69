import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelkube_serving.models.builtin import ensure_builtin
from tests.controlplane.cluster import ControlPlane
from tests.gateway.harness import InProcessGateway, Pod
from tests.operator.harness import REPO
from tests.serving.adapter_files import write_adapter
from tests.serving.inprocess import InProcessRuntime
from tests.serving.runtime_process import RuntimeProcess

_namespaces = itertools.count()


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("control-plane")).start(crds=REPO / "crds")
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="module")
def front() -> str:
    """The gateway's front (`--front`) where a module does not ask for both (see
    test_gateway_e2e): the namespace, the pods and the gateways are one set per front."""
    return "uvicorn"


@pytest.fixture(scope="module")
def namespace(control_plane: ControlPlane, front: str) -> str:
    name = f"gateway-{front}-{next(_namespaces)}"
    control_plane.kubectl("create", "namespace", name)
    return name


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("adapter") / "a1"
    return write_adapter(ensure_builtin("tiny"), out, "lora", seed=1)


@pytest.fixture(scope="module")
def pods(
    tmp_path_factory: pytest.TempPathFactory, adapter: Path, front: str
) -> Iterator[dict[str, Pod]]:
    """The runtimes playing the pods: chat-0 and chat-1 serve `chat` (and its adapter a1),
    other-0 serves `other`. chat-0 is a process of its own, so that a test can kill it; the
    others run in this process, which spares each a new interpreter importing MLX."""
    logs = tmp_path_factory.mktemp("pods")
    # Every address: an EndpointSlice refuses loopback ones (see `host_address`).
    tiny = ["--host", "0.0.0.0", "--model", "builtin://tiny", "--served-model-name"]
    chat, other = [*tiny, "chat", "--adapter", f"a1={adapter}"], [*tiny, "other"]
    started: dict[str, Pod] = {}
    try:
        started["chat-0"] = RuntimeProcess(chat, logs / "chat-0.log").start(wait_ready=False)
        started["chat-1"] = InProcessRuntime(chat, logs / "chat-1.log").start()
        started["other-0"] = InProcessRuntime(other, logs / "other-0.log").start()
        started["chat-0"].wait_ready(180)
        yield started
    finally:
        for pod in started.values():
            pod.stop()


@pytest.fixture(scope="module")
def start_gateway(
    control_plane: ControlPlane, namespace: str, front: str
) -> Iterator[Callable[..., InProcessGateway]]:
    started: list[InProcessGateway] = []

    def start(hold_timeout_s: float, **options: Any) -> InProcessGateway:
        options.setdefault("front", front)
        gateway = InProcessGateway(control_plane, namespace, hold_timeout_s, **options).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()
