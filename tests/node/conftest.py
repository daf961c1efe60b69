"""One control plane (with the CRDs) and one real node for the whole real-node tier.

Package-scoped, so the node stops as soon as the tier's tests are done, also on a pytest-xdist
worker that goes on with other modules (tests/xdist_scopes.py keeps the tier together).

The tier runs in the default `pytest` run; it is skipped, with the one reason found, only when
this machine cannot run containers (tests/node/node.py `why_no_containers`).
"""

from collections.abc import Iterator

import pytest

from tests.controlplane.cluster import ControlPlane
from tests.node.cluster import imported, start_control_plane, start_node
from tests.node.node import RealNode, why_no_containers
from tests.operator.harness import OperatorProcess, operator_kubeconfig

_why = why_no_containers()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The real-node tests (ordered and grouped by tests/conftest.py) are skipped, with the
    reason, where this machine cannot run them."""
    real = [item for item in items if item.get_closest_marker("real_node")]
    if _why is None:
        return
    skip = pytest.mark.skip(reason=f"this machine cannot run containers: {_why}")
    for item in real:
        item.add_marker(skip)


@pytest.fixture(scope="package")
def node_control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = start_control_plane(tmp_path_factory.mktemp("control-plane"))
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="package")
def node(
    node_control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealNode]:
    real = start_node(tmp_path_factory.mktemp("node"), node_control_plane)
    try:
        yield real
    finally:
        real.stop()


@pytest.fixture(scope="package")
def runtime_image(node: RealNode) -> str:
    """The runtime image from `make images`' recipe (cached by its inputs), in containerd."""
    return imported(node, "runtime")


@pytest.fixture(scope="package")
def operator_image(node: RealNode) -> str:
    return imported(node, "operator")


@pytest.fixture(scope="package")
def operator(node_control_plane: ControlPlane, runtime_image: str) -> Iterator[OperatorProcess]:
    """The operator as a process under its own ServiceAccount, for the `real-*` namespaces; its
    pods (runtime, trainer) run the runtime image on the real node."""
    cp = node_control_plane
    proc = OperatorProcess(operator_kubeconfig(cp), cp.workdir / "operator.log", "real-*")
    proc.start()
    yield proc
    proc.stop()
