"""autoscaling.minReplicas 0: the children and the status while awake and at zero (the
gateway flips spec.replicas through /scale; tests/gateway shows it doing so)."""

from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.builders.adapters import AdapterPlan
from modelkube_operator.builders.common import Owner
from modelkube_operator.builders.runtime import build_deployment
from modelkube_operator.builders.scaling import build_hpa, build_scaledobject
from modelkube_operator.status.modelservice import deployment_conditions

OWNER = Owner("modelkube.io/v1alpha1", "ModelService", "chat", "team-a", "uid-1", 3)
SCALING = {"minReplicas": 0, "maxReplicas": 3, "target": 4, "idleSeconds": 30}


def spec(replicas: int, **scaling: object) -> ModelServiceSpec:
    return ModelServiceSpec.model_validate(
        {
            "model": {"uri": "builtin://tiny"},
            "replicas": replicas,
            "autoscaling": {**SCALING, **scaling},
        }
    )


def deployment(s: ModelServiceSpec) -> dict[str, object]:
    spec_part: dict[str, object] = build_deployment(OWNER, s, AdapterPlan(), "h")["spec"]
    return spec_part


def test_awake_the_hpa_keeps_at_least_one_replica_and_owns_the_count() -> None:
    awake = spec(1)
    hpa = build_hpa(OWNER, awake)
    assert hpa is not None and hpa["spec"]["minReplicas"] == 1
    assert "replicas" not in deployment(awake)
    assert not awake.scaled_to_zero()


def test_at_zero_there_is_no_autoscaler_and_the_deployment_has_no_pods() -> None:
    asleep = spec(0)
    assert asleep.scaled_to_zero()
    assert build_hpa(OWNER, asleep) is None
    keda = spec(0, keda={"prometheusAddress": "http://prometheus:9090"})
    assert build_scaledobject(OWNER, keda, keda_present=True) is None
    assert deployment(asleep)["replicas"] == 0


def test_keda_never_holds_zero_itself() -> None:
    keda = spec(1, keda={"prometheusAddress": "http://prometheus:9090"})
    scaled = build_scaledobject(OWNER, keda, keda_present=True)
    assert scaled is not None and scaled["spec"]["minReplicaCount"] == 1


def test_at_zero_the_service_reads_ready_scaled_to_zero_not_degraded() -> None:
    dep = {"metadata": {"generation": 2}, "spec": {"replicas": 0}, "status": {}}
    conds = {c.type: c for c in deployment_conditions(spec(0), dep)}
    assert (conds["Ready"].status, conds["Ready"].reason) == (True, "ScaledToZero")
    assert conds["Degraded"].status is False
    fixed = ModelServiceSpec.model_validate({"model": {"uri": "builtin://tiny"}, "replicas": 0})
    plain = {c.type: c for c in deployment_conditions(fixed, dep)}
    assert plain["Ready"].status is False  # replicas: 0 by hand: nothing wakes it


def test_no_replicas_ready_yet_while_waking_is_not_ready() -> None:
    dep = {"metadata": {"generation": 2}, "spec": {"replicas": 1}, "status": {}}
    conds = {c.type: c for c in deployment_conditions(spec(1), dep)}
    assert (conds["Ready"].status, conds["Ready"].reason) == (False, "NoReplicasReady")
