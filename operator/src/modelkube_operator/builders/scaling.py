"""HorizontalPodAutoscaler and PodDisruptionBudget for a ModelService."""

from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.builders.common import Obj, Owner, metadata, selector_labels
from modelkube_operator.builders.runtime import COMPONENT

IN_FLIGHT_METRIC = "modelkube_requests_in_flight"


def build_hpa(owner: Owner, spec: ModelServiceSpec) -> Obj | None:
    scaling = spec.autoscaling
    if scaling is None:
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
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(owner, COMPONENT),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner.name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [metric],
        },
    }


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
