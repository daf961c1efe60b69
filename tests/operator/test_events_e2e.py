"""Condition transitions become Events on the object, Normal or Warning by what they mean, and
each transition once, on the real control plane."""

from collections import Counter
from typing import Any

from modelkube_operator.handlers.posting import event_type

from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import OperatorProcess, condition, get_json, wait_until
from tests.operator.test_modelservice_e2e import apply, modelservice, ready


def events_of(cp: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    listing = get_json(
        cp, "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )
    return list((listing or {}).get("items", []))


def test_ready_and_its_road_there_are_posted_once_each(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    apply(cp, namespace, modelservice("told"))
    wait_until(lambda: ready(cp, namespace, "told"), 60, f"told Ready\n{operator.log()}")

    def ready_event() -> list[dict[str, Any]]:
        return [
            e
            for e in events_of(cp, namespace, "told")
            if e["message"].startswith("Ready=True") and e["type"] == "Normal"
        ]

    wait_until(ready_event, 30, f"a Normal Ready=True Event\n{operator.log()}")
    ours = [e for e in events_of(cp, namespace, "told") if "=" in e["message"].split(":")[0]]
    # A repeat is another Event or the count of one folded by the API server.
    repeats: Counter[tuple[str, str]] = Counter()
    for e in ours:
        repeats[(e["reason"], e["message"])] += e.get("count") or 1
    assert all(n == 1 for n in repeats.values()), repeats


def test_event_types_follow_what_the_condition_means() -> None:
    def cond(type_: str, status: str) -> dict[str, str]:
        return {"type": type_, "status": status}

    assert event_type(cond("Ready", "True")) == "Normal"
    assert event_type(cond("Ready", "False")) == "Warning"
    assert event_type(cond("Degraded", "True")) == "Warning"
    assert event_type(cond("Degraded", "False")) == "Normal"
    assert event_type(cond("Failed", "True")) == "Warning"
    assert event_type(cond("Succeeded", "True")) == "Normal"
    assert event_type(cond("Progressing", "False")) == "Normal"


def test_deleting_a_namespace_leaves_no_tracebacks(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    names = [f"gone-{i}" for i in range(3)]
    for name in names:
        apply(cp, namespace, modelservice(name))
    wait_until(lambda: all(ready(cp, namespace, name) for name in names), 90, "all three Ready")
    before = operator.log_path.stat().st_size
    cp.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s")
    with operator.log_path.open("rb") as log:
        log.seek(before)
        after = log.read().decode(errors="replace")
    assert "Traceback" not in after, after[-3000:]
    assert "being terminated" not in after, after[-3000:]


def test_an_adapter_on_a_claim_that_does_not_exist_is_not_ready(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    adapters = [{"name": "a", "uri": "pvc://nowhere/a"}]
    apply(cp, namespace, modelservice("claimless", adapters=adapters))

    def not_ready() -> dict[str, Any] | None:
        cond = condition(
            get_json(cp, "modelservice", "claimless", "-n", namespace), "AdaptersReady"
        )
        return cond if cond.get("status") == "False" else None

    cond = wait_until(not_ready, 30, f"AdaptersReady=False\n{operator.log()}")
    assert "claim nowhere does not exist" in cond["message"]
