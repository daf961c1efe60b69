"""The fine-tune examples finish as shipped: the claim, the FineTuneJob, the ModelService that
serves its adapter, applied from examples/ unchanged, in the order their comments give."""

import json
from typing import Any

from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import (
    REPO,
    OperatorProcess,
    finish_training_pod,
    get_json,
    wait_until,
)

EXAMPLES = REPO / "examples"


def _volume(namespace: str) -> dict[str, Any]:
    """The cluster's storage: a free volume of no class, as a provisioner would make one (the
    test control plane has none). The example's claim binds to it like to any other volume."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"examples-{namespace}"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": f"/tmp/examples-{namespace}"},
            "storageClassName": "",
        },
    }


def _true(obj: dict[str, Any] | None, type_: str) -> bool:
    conditions = (obj or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == type_ and c["status"] == "True" for c in conditions)


def test_the_fine_tune_examples_reach_succeeded_and_ready(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    cp.kubectl("apply", "-f", "-", stdin=json.dumps(_volume(namespace)))
    for name in ("adapters-pvc", "finetunejob-tiny", "modelservice-tiny-tuned"):
        cp.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / f"{name}.yaml"))

    wait_until(
        lambda: (
            (get_json(cp, "pvc", "adapters", "-n", namespace) or {}).get("status", {}).get("phase")
            == "Bound"
        ),
        30,
        "the example's claim bound",
    )
    finish_training_pod(cp, namespace, "tiny-lora", 0)
    wait_until(
        lambda: _true(get_json(cp, "finetunejob", "tiny-lora", "-n", namespace), "Succeeded"),
        60,
        f"tiny-lora Succeeded\n{operator.log()}",
    )
    service = wait_until(
        lambda: (
            (ms := get_json(cp, "modelservice", "tiny-tuned", "-n", namespace))
            and _true(ms, "Ready")
            and _true(ms, "AdaptersReady")
            and ms
        ),
        60,
        f"tiny-tuned Ready with its adapter\n{operator.log()}",
    )
    assert service["status"]["servedModels"] == ["tiny-tuned", "tiny-tuned:chat"]
    # What `kubectl get` shows: the model, and ready/desired replicas.
    table = cp.kubectl("get", "ms", "tiny-tuned", "-n", namespace).stdout
    assert "builtin://tiny" in table and "1/1" in table, table
    wide = cp.kubectl("get", "ms", "tiny-tuned", "-n", namespace, "-o", "wide").stdout
    assert f"http://tiny-tuned.{namespace}.svc:8000/v1" in wide and "runtime:" in wide, wide
