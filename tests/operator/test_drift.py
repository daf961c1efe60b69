"""Which child events mean drift: someone other than the operator wrote the object."""

from typing import Any

from modelkube_operator.k8s.client import FIELD_MANAGER
from modelkube_operator.reconcilers.common import changed_by_others


def child(*entries: tuple[str, str, str]) -> dict[str, Any]:
    fields = [
        {"manager": manager, "operation": "Update", "time": time, "subresource": sub}
        for manager, time, sub in entries
    ]
    return {"metadata": {"managedFields": fields}}


def test_our_own_apply_and_status_updates_are_not_drift() -> None:
    ours = (FIELD_MANAGER, "2026-11-22T05:00:01Z", "")
    status = ("kube-controller-manager", "2026-11-22T05:00:09Z", "status")
    assert not changed_by_others(child(ours, status))


def test_a_later_write_by_someone_else_is_drift() -> None:
    ours = (FIELD_MANAGER, "2026-11-22T05:00:01Z", "")
    assert changed_by_others(child(ours, ("kubectl-edit", "2026-11-22T05:00:05Z", "")))
    assert changed_by_others(child(ours, ("kubectl", "", "scale")))  # scale records no time
    assert changed_by_others(child(ours, ("kubectl-patch", "2026-11-22T05:00:01Z", "")))  # a tie
    assert not changed_by_others(child(("kubectl-edit", "2026-11-22T04:00:00Z", ""), ours))


def test_without_an_apply_of_ours_it_counts_as_changed() -> None:
    assert changed_by_others(child(("kubectl-create", "2026-11-22T05:00:01Z", "")))
    assert changed_by_others({"metadata": {}})
