"""ModelService on the real control plane, reconciled by the operator under its own ClusterRole."""

from typing import Any

import yaml

from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import REPO, OperatorProcess, get_json, wait_until

CHILDREN = ("deployment", "service", "configmap")


def apply(cp: ControlPlane, namespace: str, manifest: dict[str, Any]) -> None:
    cp.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest))


def modelservice(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelkube.io/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": name},
        "spec": {"model": {"uri": "builtin://tiny"}, **spec},
    }


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for cond in (obj or {}).get("status", {}).get("conditions", []):
        if cond["type"] == type_:
            return dict(cond)
    return None


def ready(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    ms = get_json(cp, "modelservice", name, "-n", namespace)
    cond = condition(ms, "Ready")
    return (
        ms if cond and cond["status"] == "True" and cond["reason"] == "AllReplicasReady" else None
    )


def test_example_becomes_ready_with_its_children(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    cp.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "modelservice-tiny.yaml"))
    ms = wait_until(lambda: ready(cp, namespace, "tiny"), 30, f"tiny Ready\n{operator.log()}")
    assert ms["status"]["readyReplicas"] == 2
    assert ms["status"]["url"] == f"http://tiny.{namespace}.svc:8000/v1"
    assert ms["status"]["servedModels"] == ["tiny"]
    assert ms["status"]["observedGeneration"] == ms["metadata"]["generation"]
    assert condition(ms, "APIKeysRequired")["reason"] == "NoAPIKeys"  # type: ignore[index]
    deployment = get_json(cp, "deployment", "tiny", "-n", namespace)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "ModelService"
    assert get_json(cp, "pdb", "tiny", "-n", namespace) is not None  # 2 replicas
    listing = cp.kubectl("get", "modelkube", "-n", namespace).stdout
    assert "tiny" in listing
    assert "True" in listing
