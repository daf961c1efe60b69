"""HorizontalPodAutoscaler (or KEDA's ScaledObject) and PodDisruptionBudget for a ModelService."""

from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.builders.common import Obj, Owner, metadata, selector_labels
from modelkube_operator.builders.runtime import COMPONENT

IN_FLIGHT_METRIC = "modelkube_requests_in_flight"
KEDA_API_VERSION = "keda.sh/v1alpha1"


def uses_keda(spec: ModelServiceSpec, keda_present: bool) -> bool:
    """KEDA scales the service when its spec asks for it and KEDA's CRD is installed."""
    return bool(spec.autoscaling and spec.autoscaling.keda and keda_present)


def in_flight_query(owner: Owner) -> str:
    """All the service's in-flight requests: the runtime labels them with the served model
    name, which is the ModelService's name."""
    return f'sum({IN_FLIGHT_METRIC}{{namespace="{owner.namespace}", model="{owner.name}"}})'


def _behavior(spec: ModelServiceSpec) -> Obj | None:
    """The HPA's scale-down window, when the spec sets one (else the cluster's default)."""
    delay = spec.autoscaling.scale_down_delay_seconds if spec.autoscaling else None
    if delay is None:
        return None
    return {"scaleDown": {"stabilizationWindowSeconds": delay}}


def build_hpa(owner: Owner, spec: ModelServiceSpec, keda_present: bool = False) -> Obj | None:
    scaling = spec.autoscaling
    if scaling is None or uses_keda(spec, keda_present) or spec.scaled_to_zero():
        return None
    if scaling.metric == "cpu":
        metric: Obj = {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": scaling.target},
            },
        }
    else:
        # Served to the HPA by prometheus-adapter from the runtime's own gauge.
        metric = {
            "type": "Pods",
            "pods": {
                "metric": {"name": IN_FLIGHT_METRIC},
                "target": {"type": "AverageValue", "averageValue": str(scaling.target)},
            },
        }
    hpa: Obj = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(owner, COMPONENT),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner.name},
            # An HPA cannot hold zero (that needs an alpha feature gate): the gateway does.
            "minReplicas": max(1, scaling.min_replicas),
            "maxReplicas": scaling.max_replicas,
            "metrics": [metric],
        },
    }
    if (behavior := _behavior(spec)) is not None:
        hpa["spec"]["behavior"] = behavior
    return hpa


def build_scaledobject(owner: Owner, spec: ModelServiceSpec, keda_present: bool) -> Obj | None:
    """KEDA's ScaledObject in place of the HPA; KEDA then runs an HPA of its own over an
    external metric. Its default metric type, AverageValue, divides the query's total by the
    replicas, so `threshold` is the same per-pod target the HPA would use."""
    if not uses_keda(spec, keda_present) or spec.scaled_to_zero():
        return None
    scaling = spec.autoscaling
    assert scaling is not None and scaling.keda is not None
    scaled: Obj = {
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledObject",
        "metadata": metadata(owner, COMPONENT),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner.name},
            # Not KEDA's own zero: its trigger reads the pods' metric, so with no pod nothing
            # would wake it. The gateway, which sees the requests, scales to and from zero.
            "minReplicaCount": max(1, scaling.min_replicas),
            "maxReplicaCount": scaling.max_replicas,
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": scaling.keda.prometheus_address,
                        "query": in_flight_query(owner),
                        "threshold": str(scaling.target),
                    },
                }
            ],
        },
    }
    if (behavior := _behavior(spec)) is not None:
        scaled["spec"]["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": behavior}}
    return scaled


def build_pdb(owner: Owner, spec: ModelServiceSpec) -> Obj | None:
    """Only with more than one replica: a PDB over one pod would block node drains."""
    if spec.min_replicas() < 2:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(owner, COMPONENT),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(owner)}},
    }
