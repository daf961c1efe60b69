"""ModelService on the real control plane, reconciled by the operator under its own ClusterRole."""

from typing import Any

import yaml

from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import REPO, OperatorProcess, condition, get_json, wait_until

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


def ready(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    ms = get_json(cp, "modelservice", name, "-n", namespace)
    cond = condition(ms, "Ready")
    return ms if cond.get("status") == "True" and cond["reason"] == "AllReplicasReady" else None


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
    assert condition(ms, "APIKeysRequired")["reason"] == "NoAPIKeys"
    deployment = get_json(cp, "deployment", "tiny", "-n", namespace)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "ModelService"
    assert get_json(cp, "pdb", "tiny", "-n", namespace) is not None  # 2 replicas
    listing = cp.kubectl("get", "modelkube", "-n", namespace).stdout
    assert "tiny" in listing
    assert "True" in listing


def deployment(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    return get_json(cp, "deployment", name, "-n", namespace)


def replicas_are(cp: ControlPlane, namespace: str, name: str, n: int) -> bool:
    dep = deployment(cp, namespace, name)
    return dep is not None and dep["spec"].get("replicas") == n


def test_spec_changes_update_the_children(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    apply(cp, namespace, modelservice("chat", replicas=1))
    wait_until(lambda: ready(cp, namespace, "chat"), 30, "chat Ready")
    assert get_json(cp, "pdb", "chat", "-n", namespace) is None

    apply(cp, namespace, modelservice("chat", replicas=3))
    wait_until(lambda: replicas_are(cp, namespace, "chat", 3), 15, "3 replicas")
    wait_until(lambda: get_json(cp, "pdb", "chat", "-n", namespace), 15, "a PDB")

    before = deployment(cp, namespace, "chat")
    assert before is not None
    apply(cp, namespace, modelservice("chat", replicas=3, model={"uri": "builtin://small"}))

    def rolled() -> bool:
        config = get_json(cp, "configmap", "chat-runtime", "-n", namespace) or {}
        dep = deployment(cp, namespace, "chat") or before
        hash_key = "modelkube.io/settings-hash"
        new_hash = dep["spec"]["template"]["metadata"]["annotations"][hash_key]
        old_hash = before["spec"]["template"]["metadata"]["annotations"][hash_key]
        model = config.get("data", {}).get("MODELKUBE_MODEL")
        return bool(model == "builtin://small" and new_hash != old_hash)

    wait_until(rolled, 15, "the new model rolled out")

    scaling = {"minReplicas": 2, "maxReplicas": 4, "metric": "cpu", "target": 70}
    # CPU utilization is relative to the request: the CRD refuses cpu scaling without one.
    cpu = {"resources": {"requests": {"cpu": "500m"}}}
    apply(cp, namespace, modelservice("chat", autoscaling=scaling, runtime=cpu))
    hpa = wait_until(lambda: get_json(cp, "hpa", "chat", "-n", namespace), 15, "an HPA")
    assert hpa["spec"]["maxReplicas"] == 4
    apply(cp, namespace, modelservice("chat", replicas=1))
    wait_until(lambda: get_json(cp, "hpa", "chat", "-n", namespace) is None, 15, "HPA removed")
    wait_until(lambda: get_json(cp, "pdb", "chat", "-n", namespace) is None, 15, "PDB removed")
    wait_until(lambda: replicas_are(cp, namespace, "chat", 1), 15, "1 replica")


def test_kubectl_scale_goes_through_the_scale_subresource(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    apply(cp, namespace, modelservice("scaled", replicas=1))
    wait_until(lambda: ready(cp, namespace, "scaled"), 30, "scaled Ready")
    cp.kubectl("scale", "-n", namespace, "modelservice/scaled", "--replicas=3")
    wait_until(lambda: replicas_are(cp, namespace, "scaled", 3), 15, "deployment at 3")
    ms = wait_until(
        lambda: (m := ready(cp, namespace, "scaled")) and m["status"]["readyReplicas"] == 3 and m,
        20,
        "3 ready replicas",
    )
    assert ms["status"]["selector"] == "modelkube.io/modelservice=scaled"


def test_deleting_the_modelservice_garbage_collects_its_children(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    apply(cp, namespace, modelservice("gone", replicas=2))
    wait_until(lambda: ready(cp, namespace, "gone"), 30, "gone Ready")
    cp.kubectl("delete", "-n", namespace, "modelservice/gone", "--wait=true")

    def children_left() -> list[str]:
        out = cp.kubectl(
            "get",
            "deploy,svc,cm,pdb,hpa",
            "-n",
            namespace,
            "-l",
            "modelkube.io/modelservice=gone",
            "-o",
            "name",
        ).stdout
        return out.split()

    wait_until(lambda: not children_left(), 20, "children garbage-collected")


def test_drift_is_corrected_within_ten_seconds(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    apply(cp, namespace, modelservice("steady", replicas=2))
    wait_until(lambda: ready(cp, namespace, "steady"), 30, "steady Ready")
    cp.kubectl("scale", "-n", namespace, "deployment/steady", "--replicas=5")
    wait_until(lambda: replicas_are(cp, namespace, "steady", 2), 10, "replicas restored to 2")
    cp.kubectl("delete", "-n", namespace, "service/steady")
    wait_until(lambda: get_json(cp, "service", "steady", "-n", namespace), 10, "service recreated")
    cp.kubectl("delete", "-n", namespace, "configmap/steady-runtime")
    wait_until(
        lambda: get_json(cp, "configmap", "steady-runtime", "-n", namespace), 10, "configmap back"
    )


def test_scaled_to_zero_through_scale_reads_ready_and_wakes_under_its_hpa(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    """What the gateway does with /scale on a ModelService with minReplicas 0: to zero (no
    pods, no HPA, Ready=True ScaledToZero) and back (the Deployment at 1, the HPA back)."""
    cp = control_plane
    scaling = {"minReplicas": 0, "maxReplicas": 3, "target": 4, "idleSeconds": 60}
    apply(cp, namespace, modelservice("sleepy", autoscaling=scaling))
    wait_until(lambda: get_json(cp, "hpa", "sleepy", "-n", namespace), 30, "an HPA while awake")
    cp.kubectl("scale", "-n", namespace, "modelservice/sleepy", "--replicas=0")
    wait_until(lambda: replicas_are(cp, namespace, "sleepy", 0), 15, "deployment at 0")
    wait_until(lambda: get_json(cp, "hpa", "sleepy", "-n", namespace) is None, 15, "no HPA")

    def scaled_to_zero() -> bool:
        ms = get_json(cp, "modelservice", "sleepy", "-n", namespace)
        ready, degraded = condition(ms, "Ready"), condition(ms, "Degraded")
        return (ready.get("status"), ready.get("reason"), degraded.get("status")) == (
            "True",
            "ScaledToZero",
            "False",
        )

    wait_until(scaled_to_zero, 15, f"Ready=True ScaledToZero\n{operator.log()}")
    cp.kubectl("scale", "-n", namespace, "modelservice/sleepy", "--replicas=1")
    wait_until(lambda: replicas_are(cp, namespace, "sleepy", 1), 15, "deployment back at 1")
    hpa = wait_until(lambda: get_json(cp, "hpa", "sleepy", "-n", namespace), 15, "HPA back")
    assert hpa["spec"]["minReplicas"] == 1
