import itertools
from collections.abc import Iterator

import pytest

from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import REPO, OperatorProcess, operator_kubeconfig

_namespaces = itertools.count()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("control-plane")).start(crds=REPO / "crds")
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def operator(control_plane: ControlPlane) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(
        operator_kubeconfig(control_plane), control_plane.workdir / "operator.log"
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def namespace(control_plane: ControlPlane) -> str:
    name = f"test-{next(_namespaces)}"
    control_plane.kubectl("create", "namespace", name)
    return name
