import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modelkube_serving.models.builtin import ensure_builtin
from tests.controlplane.cluster import ControlPlane
from tests.gateway.harness import InProcessGateway
from tests.operator.harness import REPO
from tests.serving.adapter_files import write_adapter
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
def namespace(control_plane: ControlPlane) -> str:
    name = f"gateway-{next(_namespaces)}"
    control_plane.kubectl("create", "namespace", name)
    return name


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("adapter") / "a1"
    return write_adapter(ensure_builtin("tiny"), out, "lora", seed=1)


@pytest.fixture(scope="module")
def pods(
    tmp_path_factory: pytest.TempPathFactory, adapter: Path
) -> Iterator[dict[str, RuntimeProcess]]:
    """Runtime processes playing the pods: chat-0 and chat-1 serve `chat` (and its adapter
    a1), other-0 serves `other`. Started together: each is a new interpreter loading MLX."""
    logs = tmp_path_factory.mktemp("pods")
    # Every address: an EndpointSlice refuses loopback ones (see `host_address`).
    tiny = ["--host", "0.0.0.0", "--model", "builtin://tiny", "--served-model-name"]
    chat, other = [*tiny, "chat", "--adapter", f"a1={adapter}"], [*tiny, "other"]
    started = {
        name: RuntimeProcess(args, logs / f"{name}.log").start(wait_ready=False)
        for name, args in (("chat-0", chat), ("chat-1", chat), ("other-0", other))
    }
    try:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda p: p.wait_ready(180), started.values()))
        yield started
    finally:
        for pod in started.values():
            pod.stop()


@pytest.fixture(scope="module")
def start_gateway(
    control_plane: ControlPlane, namespace: str
) -> Iterator[Callable[[float], InProcessGateway]]:
    started: list[InProcessGateway] = []

    def start(hold_timeout_s: float) -> InProcessGateway:
        gateway = InProcessGateway(control_plane, namespace, hold_timeout_s).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()
