"""The resync's choice of owners to reconcile, from the in-memory owners and children."""

from typing import Any

from modelkube_operator.reconcilers.resync import (
    expected_children,
    not_ready,
    out_of_sync,
    spec_pending,
)

BASE = {"ConfigMap", "Deployment", "Service"}


def owner(kind: str, name: str, spec: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelkube.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 1},
        "spec": spec,
        "status": {"observedGeneration": 1, **status},
    }


def ms(name: str, **spec: Any) -> dict[str, Any]:
    return owner("ModelService", name, {"model": {"uri": "builtin://tiny"}, **spec})


def ftj(name: str, **status: Any) -> dict[str, Any]:
    spec = {
        "baseModel": {"uri": "builtin://tiny"},
        "dataset": {"configMapRef": {"name": "data", "key": "train.jsonl"}},
        "output": {"uri": "pvc://out/adapter"},
    }
    return owner("FineTuneJob", name, spec, **status)


def test_expected_children_follow_the_spec() -> None:
    assert expected_children(ms("a")) == frozenset(BASE)
    assert expected_children(ms("b", replicas=2)) == frozenset(BASE | {"PodDisruptionBudget"})
    autoscaled = ms("c", autoscaling={"minReplicas": 2, "maxReplicas": 4, "target": 8})
    assert expected_children(autoscaled) == frozenset(BASE) | {
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    assert expected_children(ftj("t")) == frozenset({"Job"})


def test_unusable_spec_expects_nothing_and_finished_job_expects_anything() -> None:
    assert expected_children(owner("ModelService", "bad", {"model": {}})) == frozenset()
    # A name no Service can have: nothing is made, so nothing is missing.
    assert expected_children(ms("my.model")) == frozenset()
    done = ftj("t", conditions=[{"type": "Succeeded", "status": "True"}])
    assert expected_children(done) is None


def test_out_of_sync_finds_missing_and_unwanted_children() -> None:
    owners = [ms("ok"), ms("missing"), ms("extra"), ftj("t"), ftj("done")]
    owners[-1]["status"]["conditions"] = [{"type": "Failed", "status": "True"}]
    deleting = ms("going")
    deleting["metadata"]["deletionTimestamp"] = "2026-11-22T00:00:00Z"
    children = {
        ("ModelService", "ns", "ok"): list(BASE),
        ("ModelService", "ns", "missing"): ["ConfigMap", "Service"],
        ("ModelService", "ns", "extra"): [*BASE, "HorizontalPodAutoscaler"],
        ("FineTuneJob", "ns", "t"): ["Job"],
    }
    stale = out_of_sync([*owners, deleting], children)
    assert [o["metadata"]["name"] for o in stale] == ["missing", "extra"]


def test_a_spec_the_status_has_not_seen_is_pending() -> None:
    seen = ms("seen")
    assert not spec_pending(seen)
    changed = ms("changed")
    changed["metadata"]["generation"] = 2
    new = ms("new")
    new["status"] = {}
    assert spec_pending(changed)
    assert spec_pending(new)
    changed["metadata"]["deletionTimestamp"] = "2026-11-22T00:00:00Z"
    assert not spec_pending(changed)
    assert out_of_sync([seen, new], {("ModelService", "ns", "seen"): list(BASE)}) == [new]


def test_a_modelservice_not_ready_is_refreshed_every_pass() -> None:
    def ready(status: str, reason: str = "Available") -> list[dict[str, str]]:
        return [{"type": "Ready", "status": status, "reason": reason}]

    owners = [
        owner("ModelService", "up", {}, conditions=ready("True")),
        owner("ModelService", "starting", {}, conditions=ready("False", "ReplicasNotReady")),
        owner("ModelService", "broken", {}, conditions=ready("False", "InvalidSpec")),
        owner("ModelService", "new", {}),  # no status yet: its own handler runs
        ftj("job", conditions=ready("False")),
    ]
    assert [o["metadata"]["name"] for o in not_ready(owners)] == ["starting"]
