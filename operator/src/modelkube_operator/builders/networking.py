"""The Service in front of the runtime pods."""

import re

from modelkube_operator.builders.common import RUNTIME_PORT, Obj, Owner, metadata, selector_labels
from modelkube_operator.builders.runtime import COMPONENT

_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


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


def service_name_problem(name: str) -> str:
    """Why a ModelService's name cannot name its Service ("" when it can). The API server
    accepts any DNS subdomain as the ModelService's name ("my.model"), but a Service needs a
    DNS-1035 label, so such a spec can never be served."""
    if len(name) <= 63 and _DNS_1035_LABEL.fullmatch(name):
        return ""
    return (
        f'metadata.name "{name}" cannot name the Service in front of the runtime: it must be a'
        " DNS-1035 label (at most 63 lowercase letters, digits or '-', starting with a letter"
        " and ending with a letter or digit)"
    )
