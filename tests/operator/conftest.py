import itertools
from collections.abc import Iterator

import pytest

from tests.controlplane.binaries import ensure_binaries
from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import REPO, OperatorProcess, operator_kubeconfig

_namespaces = itertools.count()
KEDA_CRD_FILE = "keda.sh_scaledobjects.yaml"
POOL_CRD_FILE = "inference.networking.k8s.io_inferencepools.yaml"


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("control-plane")).start(crds=REPO / "crds")
    try:
        # As on a cluster with KEDA: its real ScaledObject CRD, from its Go module.
        cp.kubectl("apply", "--server-side", "-f", str(ensure_binaries()[KEDA_CRD_FILE]))
        cp.wait_served("scaledobjects.keda.sh")
        # And the Gateway API Inference Extension's InferencePool CRD, from its Go module.
        cp.kubectl("apply", "--server-side", "-f", str(ensure_binaries()[POOL_CRD_FILE]))
        pools = "inferencepools.inference.networking.k8s.io"
        cp.wait_served(pools)
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
