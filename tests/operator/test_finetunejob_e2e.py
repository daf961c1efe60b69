"""FineTuneJob → batch/v1 Job; the Job's outcome (its pod finished through kwok) shows in status."""

import time
from typing import Any

import yaml

from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import (
    OperatorProcess,
    adapters_claim,
    finish_training_pod,
    get_json,
    wait_until,
    with_condition,
)


def finetunejob(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelkube.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "baseModel": {"uri": "builtin://tiny"},
            "dataset": {"configMapRef": {"name": "data", "key": "train.jsonl"}},
            "hyperparameters": {"iterations": 20},
            "output": {"uri": f"pvc://adapters/{name}"},
        },
    }


def storage(namespace: str, host_path: str | None = None) -> list[dict[str, Any]]:
    """What the user provides: the dataset ConfigMap and a bound claim for the adapters."""
    data = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "data", "namespace": namespace},
        "data": {"train.jsonl": '{"text": "hello"}\n'},
    }
    return [data, *adapters_claim(namespace, host_path)]


def submit(cp: ControlPlane, namespace: str, name: str, **trainer: int) -> None:
    job = finetunejob(name)
    if trainer:
        job["spec"]["trainer"] = trainer
    docs = [*storage(namespace), job]
    cp.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(docs))


def test_succeeded_job_shows_in_status_with_the_adapter(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    submit(cp, namespace, "tune")
    job = wait_until(lambda: get_json(cp, "job", "tune", "-n", namespace), 15, "the Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["finetune", "--base"]
    finish_training_pod(cp, namespace, "tune", 0)
    ftj = wait_until(
        lambda: with_condition(cp, "finetunejob", namespace, "tune", "Succeeded"),
        60,
        f"Succeeded\n{operator.log()}",
    )
    assert ftj["status"]["adapterURI"] == "pvc://adapters/tune"
    assert ftj["status"]["completionTime"]
    assert "Succeeded" in cp.kubectl("get", "ftj", "-n", namespace).stdout

    # Deleting a finished job's Job (by hand, or a TTL) must not train again.
    cp.kubectl("delete", "job", "tune", "-n", namespace, "--wait=true")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        assert get_json(cp, "job", "tune", "-n", namespace) is None, "the Job was recreated"
        time.sleep(0.5)
    assert with_condition(cp, "finetunejob", namespace, "tune", "Succeeded") is not None


def test_failed_job_shows_in_status(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    name = "doomed"
    # One retry, not the default two: the Job controller waits 10 s before the first retry and
    # 20 s before the second, and one retry shows that a failure is retried before it fails.
    submit(cp, namespace, name, backoffLimit=1)
    for _ in range(2):  # the first pod and its one retry fail
        finish_training_pod(cp, namespace, name, 1, "out of memory")
    ftj = wait_until(
        lambda: with_condition(cp, "finetunejob", namespace, name, "Failed"),
        120,
        f"Failed\n{operator.log()}",
    )
    failed = next(c for c in ftj["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert failed["message"].startswith("out of memory (")
    assert ftj["status"]["adapterURI"] == ""


def test_bad_data_fails_at_once_with_the_trainers_error(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    """Exit code 2 (bad data or arguments) fails the Job without retries: they cannot help."""
    cp = control_plane
    submit(cp, namespace, "baddata")
    error = "train.jsonl line 1: no assistant message: nothing to learn"
    finish_training_pod(cp, namespace, "baddata", 2, error)
    ftj = wait_until(
        lambda: with_condition(cp, "finetunejob", namespace, "baddata", "Failed"),
        60,
        f"Failed\n{operator.log()}",
    )
    failed = next(c for c in ftj["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "PodFailurePolicy"
    assert failed["message"].startswith(error)
    pods = get_json(cp, "pods", "-n", namespace, "-l", "modelkube.io/finetunejob=baddata")
    assert len((pods or {})["items"]) == 1, "a pod that failed on bad input was retried"
