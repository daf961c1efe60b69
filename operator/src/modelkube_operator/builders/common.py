"""Metadata every child shares: names, labels, owner references, the restricted pod context."""

from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
MANAGED_BY = "modelkube-operator"
RUNTIME_PORT = 8000


@dataclass(frozen=True)
class Owner:
    """The parent resource, as much of it as its children need."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str
    generation: int = 0

    def reference(self) -> Obj:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def selector_labels(owner: Owner) -> dict[str, str]:
    return {f"modelkube.io/{owner.kind.lower()}": owner.name}


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **selector_labels(owner),
    }


def metadata(owner: Owner, component: str, name: str | None = None) -> Obj:
    return {
        "name": name or owner.name,
        "namespace": owner.namespace,
        "labels": labels(owner, component),
        "ownerReferences": [owner.reference()],
    }


def restricted_container_context() -> Obj:
    """Pod Security Standard "restricted", plus a read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_pod_context() -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
