"""The Service in front of the runtime pods."""

from modelkube_operator.builders.common import RUNTIME_PORT, Obj, Owner, metadata, selector_labels
from modelkube_operator.builders.runtime import COMPONENT


def build_service(owner: Owner) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, COMPONENT),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner),
            "ports": [
                {"name": "http", "port": RUNTIME_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def service_url(owner: Owner) -> str:
    return f"http://{owner.name}.{owner.namespace}.svc:{RUNTIME_PORT}/v1"
