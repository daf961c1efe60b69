"""KEDA in place of the HPA, against KEDA's real ScaledObject CRD (installed by the
control_plane fixture from KEDA's Go module): the API server accepts what the operator renders."""

from typing import Any

import yaml

from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import OperatorProcess, get_json, wait_until
from tests.operator.test_modelservice_e2e import apply, modelservice

PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"
SCALING = {"minReplicas": 1, "maxReplicas": 3, "target": 4}


def scaledobject(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    return get_json(cp, "scaledobject", name, "-n", namespace)


def hpa(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    return get_json(cp, "hpa", name, "-n", namespace)


def test_a_service_that_asks_for_keda_gets_a_scaledobject_and_no_hpa(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    keda = {**SCALING, "keda": {"prometheusAddress": PROMETHEUS}}
    apply(cp, namespace, modelservice("scaled", autoscaling=keda))
    found = wait_until(
        lambda: scaledobject(cp, namespace, "scaled"), 30, f"the ScaledObject\n{operator.log()}"
    )
    spec = found["spec"]
    assert found["metadata"]["ownerReferences"][0]["kind"] == "ModelService"
    assert spec["scaleTargetRef"]["name"] == "scaled"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 3)
    (trigger,) = spec["triggers"]
    assert trigger["metadata"]["serverAddress"] == PROMETHEUS
    assert trigger["metadata"]["query"] == (
        f'sum(modelkube_requests_in_flight{{namespace="{namespace}", model="scaled"}})'
    )
    assert hpa(cp, namespace, "scaled") is None

    # Back to the HPA: the ScaledObject goes (KEDA's own HPA with it), the operator's HPA comes.
    apply(cp, namespace, modelservice("scaled", autoscaling=SCALING))
    wait_until(lambda: hpa(cp, namespace, "scaled"), 30, f"the HPA\n{operator.log()}")
    wait_until(
        lambda: scaledobject(cp, namespace, "scaled") is None, 30, "the ScaledObject deleted"
    )


def test_keda_on_cpu_is_refused_by_the_api_server(
    control_plane: ControlPlane, namespace: str
) -> None:
    keda = {**SCALING, "metric": "cpu", "keda": {"prometheusAddress": PROMETHEUS}}
    manifest = yaml.safe_dump(modelservice("cpu", autoscaling=keda))
    done = control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest, check=False)
    assert done.returncode != 0
    assert "keda scales on inFlightRequests only" in done.stderr
