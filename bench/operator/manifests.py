"""The ModelServices one round applies."""

from typing import Any

import yaml
from modelkube_operator.api import GROUP, VERSION


def modelservice(namespace: str, index: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelService",
        "metadata": {"name": f"ms-{index}", "namespace": namespace},
        "spec": {"model": {"uri": "builtin://tiny"}, "replicas": 1},
    }


def modelservices_yaml(namespace: str, count: int) -> str:
    """One multi-document YAML of `count` ModelServices, for a single `kubectl apply`."""
    return yaml.safe_dump_all(modelservice(namespace, i) for i in range(count))
