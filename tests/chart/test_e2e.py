"""`helm install`, `upgrade`, `test` and `uninstall` of the chart on a real control plane.

A fresh control plane without our CRDs: the chart installs them itself (Helm would refuse to
adopt CRDs applied by hand); the Prometheus Operator's CRDs are there, so the release's
ServiceMonitor and PrometheusRule (ci/monitoring-values.yaml) meet the API server's validation.
The namespace enforces Pod Security "restricted", so the API server's own admission refuses any
pod of ours that breaks it. kwok runs no containers: the operator image is never pulled, so these
tests check the objects and pod phases, not the operator's process.
"""

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.chart.crd_schema import prometheus_operator_crds
from tests.chart.helm import CHART, NAMESPACE, RELEASE, helm
from tests.controlplane.cluster import ControlPlane

pytestmark = pytest.mark.slow
CRDS = ("modelservices.modelkube.io", "finetunejobs.modelkube.io")
OPERATOR = "app.kubernetes.io/component=operator"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    workdir = tmp_path_factory.mktemp("chart-control-plane")
    cp = ControlPlane(workdir).start(crds=prometheus_operator_crds())
    try:
        cp.kubectl("create", "namespace", NAMESPACE)
        cp.kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
        yield cp
    finally:
        cp.stop()


def _helm(cp: ControlPlane, *args: str) -> str:
    return helm(*args, "--namespace", NAMESPACE, kubeconfig=cp.admin_kubeconfig)


@pytest.fixture(scope="module")
def installed(cluster: ControlPlane) -> ControlPlane:
    values = str(CHART / "ci" / "monitoring-values.yaml")
    _helm(cluster, "install", RELEASE, str(CHART), "-f", values, "--wait", "--timeout", "90s")
    return cluster


def _get(cp: ControlPlane, *args: str) -> Any:
    return json.loads(cp.kubectl("get", *args, "-o", "json").stdout)


def _operator_pods(cp: ControlPlane) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = _get(cp, "pods", "-n", NAMESPACE, "-l", OPERATOR)["items"]
    return [p for p in pods if "deletionTimestamp" not in p["metadata"]]


def test_install_establishes_the_crds_and_runs_the_operator(installed: ControlPlane) -> None:
    for crd in CRDS:
        conditions = _get(installed, "crd", crd)["status"]["conditions"]
        assert {"type": "Established", "status": "True"} in [
            {"type": c["type"], "status": c["status"]} for c in conditions
        ]
    deployment = _get(installed, "deployment", "-n", NAMESPACE, RELEASE)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["operator", "--all-namespaces"]
    assert deployment["status"]["readyReplicas"] == 1
    [pod] = _operator_pods(installed)
    assert pod["status"]["phase"] == "Running"
    assert pod["spec"]["serviceAccountName"] == RELEASE
    for kind in ("servicemonitor", "prometheusrule", "networkpolicy", "poddisruptionbudget"):
        installed.kubectl("get", kind, "-n", NAMESPACE, RELEASE)


def test_the_namespace_refuses_pods_that_are_not_restricted(installed: ControlPlane) -> None:
    """So the chart's pods above were admitted by the API server's own Pod Security check."""
    done = installed.kubectl(
        "run", "plain", "--image=busybox", "-n", NAMESPACE, "--dry-run=server", check=False
    )
    assert "violates PodSecurity" in done.stderr


def test_the_operator_account_has_exactly_its_permissions(installed: ControlPlane) -> None:
    account = f"system:serviceaccount:{NAMESPACE}:{RELEASE}"

    def can(*what: str) -> bool:
        done = installed.kubectl("auth", "can-i", *what, "--as", account, check=False)
        return done.stdout.strip() == "yes"

    assert can("patch", "modelservices.modelkube.io/status", "-n", "team-a")
    assert can("create", "deployments.apps", "-n", "team-a")
    assert not can("delete", "modelservices.modelkube.io", "-n", "team-a")
    assert not can("get", "secrets", "-n", "team-a")


def test_notes_say_what_to_do_next(installed: ControlPlane) -> None:
    notes = _helm(installed, "get", "notes", RELEASE)
    assert f"helm test {RELEASE} --namespace {NAMESPACE}" in notes
    # A manifest to paste, not a path into a checkout the user may not have.
    assert "examples/" not in notes
    manifest = notes.split("kubectl apply -f - <<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    assert "uri: builtin://tiny" in manifest
    # What the user pastes is a ModelService the API server accepts as it is.
    installed.kubectl("apply", "--dry-run=server", "-n", "default", "-f", "-", stdin=manifest)
    assert "kubectl get modelkube" in notes
    assert "port-forward service/tiny 8000:8000" in notes


def test_helm_test_passes(installed: ControlPlane) -> None:
    out = _helm(installed, "test", RELEASE, "--timeout", "60s")
    assert "Phase:          Succeeded" in out


def test_upgrade_applies_changed_values_to_the_operator_and_the_crds(
    installed: ControlPlane,
) -> None:
    _helm(
        installed,
        "upgrade",
        RELEASE,
        str(CHART),
        "--reuse-values",
        "--set",
        "watch.namespaces={team-a}",
        "--set",
        "commonLabels.upgraded=yes",
        "--wait",
        "--timeout",
        "90s",
    )
    deployment = _get(installed, "deployment", "-n", NAMESPACE, RELEASE)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"][:3] == [
        "operator",
        "--namespace",
        "team-a",
    ]
    [pod] = _operator_pods(installed)
    assert pod["spec"]["containers"][0]["args"][1:3] == ["--namespace", "team-a"]
    assert pod["status"]["phase"] == "Running"
    # Templated CRDs follow the release (Helm's crds/ directory would never be upgraded).
    for crd in CRDS:
        assert _get(installed, "crd", crd)["metadata"]["labels"]["upgraded"] == "yes"


def test_uninstall_keeps_the_crds(installed: ControlPlane) -> None:
    _helm(installed, "uninstall", RELEASE, "--wait", "--timeout", "60s")
    gone = installed.kubectl("get", "deployment", "-n", NAMESPACE, RELEASE, check=False)
    assert "NotFound" in gone.stderr
    assert "NotFound" in installed.kubectl("get", "clusterrole", RELEASE, check=False).stderr
    for crd in CRDS:
        installed.kubectl("get", "crd", crd)
