"""An InferencePool for a ModelService that asks for one, against the Gateway API Inference
Extension's real InferencePool CRD (installed by the control_plane fixture from its Go
module): the API server accepts what the operator renders, and it goes when no longer asked."""

from typing import Any

from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import OperatorProcess, get_json, wait_until
from tests.operator.test_modelservice_e2e import apply, modelservice


def pool(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    return get_json(cp, "inferencepools.inference.networking.k8s.io", name, "-n", namespace)


def test_a_service_that_asks_for_a_pool_gets_one_of_its_pods(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    apply(cp, namespace, modelservice("pooled", inferencePool={}))
    found = wait_until(lambda: pool(cp, namespace, "pooled"), 30, f"the pool\n{operator.log()}")
    assert found["metadata"]["ownerReferences"][0]["kind"] == "ModelService"
    deployment = get_json(cp, "deployment", "pooled", "-n", namespace)
    assert deployment is not None
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    spec = found["spec"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["targetPorts"] == [{"number": 8000}]
    picker = spec["endpointPickerRef"]
    assert (picker["name"], picker["port"]) == ("pooled-epp", {"number": 9002})
    assert picker["kind"] == "Service"  # the CRD's default: it checked the object

    apply(cp, namespace, modelservice("pooled"))
    wait_until(lambda: pool(cp, namespace, "pooled") is None, 30, "the pool deleted")
