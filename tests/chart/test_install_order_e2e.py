"""The README's install orders, with the real `helm` on a real control plane.

A fresh control plane whose CRDs were applied from crds/ with kubectl, as the README's operator
section does: the chart's default install refuses to take them over (Helm adopts only objects
that carry its release's ownership metadata), so the README documents the order that works
there, `--set crds.enabled=false`, and this test follows it word for word.
"""

import json
from collections.abc import Iterator

import pytest

from tests.chart.helm import CHART, NAMESPACE, RELEASE, helm
from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import REPO, wait_until

pytestmark = pytest.mark.slow
CRDS = ("modelservices.modelkube.io", "finetunejobs.modelkube.io")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("install-order")).start()
    try:
        # The README's first step.
        cp.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        yield cp
    finally:
        cp.stop()


def _helm(cp: ControlPlane, *args: str, check: bool = True) -> str:
    return helm(*args, "--namespace", NAMESPACE, kubeconfig=cp.admin_kubeconfig, check=check)


def test_the_default_install_says_why_it_cannot_take_over_applied_crds(
    cluster: ControlPlane,
) -> None:
    out = _helm(cluster, "install", RELEASE, str(CHART), "--create-namespace", check=False)
    assert "exists and cannot be imported into the current release" in out


def test_crds_applied_first_then_the_chart_without_crds(cluster: ControlPlane) -> None:
    _helm(
        cluster,
        "install",
        RELEASE,
        str(CHART),
        "--create-namespace",
        "--set",
        "crds.enabled=false",
        "--wait",
        "--timeout",
        "90s",
    )

    def operator_ready() -> bool:
        done = cluster.kubectl("get", "deployment", RELEASE, "-n", NAMESPACE, "-o", "json")
        return bool(json.loads(done.stdout).get("status", {}).get("readyReplicas") == 1)

    wait_until(operator_ready, 60, "the operator Deployment ready")
    for crd in CRDS:
        labels = json.loads(cluster.kubectl("get", "crd", crd, "-o", "json").stdout)["metadata"]
        assert labels.get("labels", {}).get("app.kubernetes.io/managed-by") != "Helm"
    notes = _helm(cluster, "get", "notes", RELEASE)
    assert "kubectl apply --server-side -f crds/" in notes
    # The example from NOTES is accepted against the CRDs applied by hand.
    cluster.kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        "default",
        "-f",
        str(REPO / "examples" / "modelservice-tiny.yaml"),
    )
