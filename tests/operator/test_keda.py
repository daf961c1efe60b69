"""KEDA in place of the HPA: the ScaledObject builder (pure), the API rule, the resync's view."""

import pytest
from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.builders.adapters import AdapterPlan
from modelkube_operator.builders.common import Owner
from modelkube_operator.builders.programs import ProgramPlan
from modelkube_operator.builders.scaling import build_hpa, build_scaledobject, in_flight_query
from modelkube_operator.reconcilers.modelservice import OptionalCRDs, desired_children
from modelkube_operator.reconcilers.resync import expected_children, out_of_sync
from pydantic import ValidationError

OWNER = Owner("modelkube.io/v1alpha1", "ModelService", "chat", "team-a", "uid-1", 3)
PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"
KEDA = {"minReplicas": 2, "maxReplicas": 6, "target": 8, "keda": {"prometheusAddress": PROMETHEUS}}


def spec(**extra: object) -> ModelServiceSpec:
    return ModelServiceSpec.model_validate({"model": {"uri": "builtin://tiny"}, **extra})


def test_keda_scales_on_the_services_in_flight_requests_instead_of_the_hpa() -> None:
    s = spec(autoscaling=KEDA)
    scaled = build_scaledobject(OWNER, s, keda_present=True)
    assert scaled is not None
    assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    assert scaled["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    body = scaled["spec"]
    assert body["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat"}
    assert (body["minReplicaCount"], body["maxReplicaCount"]) == (2, 6)
    (trigger,) = body["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"] == {
        "serverAddress": PROMETHEUS,
        "query": 'sum(modelkube_requests_in_flight{namespace="team-a", model="chat"})',
        "threshold": "8",
    }
    assert build_hpa(OWNER, s, keda_present=True) is None


def test_without_kedas_crd_the_hpa_stays() -> None:
    s = spec(autoscaling=KEDA)
    assert build_scaledobject(OWNER, s, keda_present=False) is None
    assert build_hpa(OWNER, s, keda_present=False) is not None
    plain = spec(autoscaling={"maxReplicas": 3, "target": 4})
    assert build_scaledobject(OWNER, plain, keda_present=True) is None
    assert build_hpa(OWNER, plain, keda_present=True) is not None


def test_desired_children_swap_the_hpa_for_the_scaledobject() -> None:
    keda = OptionalCRDs(keda=True)
    wanted = desired_children(OWNER, spec(autoscaling=KEDA), AdapterPlan(), ProgramPlan(), keda)
    assert wanted["HorizontalPodAutoscaler"] is None
    assert wanted["ScaledObject"] is not None
    plain = desired_children(OWNER, spec(replicas=1), AdapterPlan(), ProgramPlan(), keda)
    assert plain["ScaledObject"] is None


def test_keda_takes_only_the_in_flight_metric() -> None:
    with pytest.raises(ValidationError):
        spec(autoscaling={**KEDA, "keda": {"prometheusAddress": "prometheus:9090"}})
    cel = ModelServiceSpec.model_json_schema(by_alias=True)["$defs"]["Autoscaling"]
    rules = [v["message"] for v in cel["x-kubernetes-validations"]]
    assert "keda scales on inFlightRequests only" in rules


def test_in_flight_query_names_the_service_by_namespace_and_model() -> None:
    assert in_flight_query(OWNER) == (
        'sum(modelkube_requests_in_flight{namespace="team-a", model="chat"})'
    )


def test_resync_does_not_judge_the_hpa_of_a_service_that_asks_for_keda() -> None:
    body = {
        "apiVersion": "modelkube.io/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": "chat", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": {"model": {"uri": "builtin://tiny"}, "autoscaling": KEDA},
        "status": {"observedGeneration": 1},
    }
    base = ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"]
    assert "HorizontalPodAutoscaler" not in (expected_children(body) or set())
    # KEDA installed (no HPA of ours) or not (an HPA): in sync either way.
    assert out_of_sync([body], {("ModelService", "ns", "chat"): base}) == []
    with_hpa = [*base, "HorizontalPodAutoscaler"]
    assert out_of_sync([body], {("ModelService", "ns", "chat"): with_hpa}) == []
