"""One control plane (with the CRDs) and one real node for the whole real-node tier.

Package-scoped, so the node stops as soon as the tier's tests are done, also on a pytest-xdist
worker that goes on with other modules (tests/xdist_scopes.py keeps the tier together).

The tier runs in the default `pytest` run; it is skipped, with the one reason found, only when
this machine cannot run containers (tests/node/node.py `why_no_containers`).
"""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.controlplane.cluster import FAKE_NODE, FAST_HPA, ControlPlane
from tests.node import build_images
from tests.node.node import RealNode, why_no_containers
from tests.operator.harness import OperatorProcess, operator_kubeconfig

REPO = Path(__file__).resolve().parents[2]
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
    workdir = tmp_path_factory.mktemp("control-plane")
    cp = ControlPlane(workdir, controller_args=FAST_HPA).start(crds=REPO / "crds")
    # Every pod here must run for real: nothing may land on kwok's simulated node.
    cp.kubectl("cordon", FAKE_NODE["metadata"]["name"])  # type: ignore[index]
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="package")
def node(
    node_control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealNode]:
    started = time.monotonic()
    real = RealNode(tmp_path_factory.mktemp("node"), node_control_plane).start()
    print(f"node Ready {time.monotonic() - started:.1f}s after start")
    try:
        yield real
    finally:
        real.stop()


@pytest.fixture(scope="package")
def runtime_image(node: RealNode) -> str:
    """The runtime image from `make images`' recipe (cached by its inputs), in containerd."""
    return _imported(node, "runtime")


@pytest.fixture(scope="package")
def operator_image(node: RealNode) -> str:
    return _imported(node, "operator")


def _imported(node: RealNode, name: str) -> str:
    started = time.monotonic()
    archive = build_images.build(name, build_images.find_uv(), build_images.Log())
    built = time.monotonic()
    node.import_image(archive)
    print(
        f"image {name}: {archive.stat().st_size / 1e6:.0f} MB compressed, built/cached in"
        f" {built - started:.1f}s, imported in {time.monotonic() - built:.1f}s"
    )
    return build_images.reference(build_images.IMAGES[name])


@pytest.fixture(scope="package")
def operator(node_control_plane: ControlPlane, runtime_image: str) -> Iterator[OperatorProcess]:
    """The operator as a process under its own ServiceAccount, for the `real-*` namespaces; its
    pods (runtime, trainer) run the runtime image on the real node."""
    cp = node_control_plane
    proc = OperatorProcess(operator_kubeconfig(cp), cp.workdir / "operator.log", "real-*")
    proc.start()
    yield proc
    proc.stop()
