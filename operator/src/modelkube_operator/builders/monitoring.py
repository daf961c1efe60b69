"""The ServiceMonitor the Prometheus Operator scrapes, when asked for and its CRD exists."""

from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.builders.common import Obj, Owner, metadata, selector_labels
from modelkube_operator.builders.runtime import COMPONENT


def build_servicemonitor(owner: Owner, spec: ModelServiceSpec, crd_present: bool) -> Obj | None:
    if not (spec.monitoring.service_monitor and crd_present):
        return None
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(owner, COMPONENT),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner)},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
        },
    }
