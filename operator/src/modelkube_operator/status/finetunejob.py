"""A FineTuneJob's conditions from its Job's real state."""

from collections.abc import Mapping
from typing import Any

from modelkube_operator.status.conditions import Cond


def trainer_message(pods: list[dict[str, Any]]) -> str:
    """The newest failed training pod's termination message (the trainer's error line)."""
    failed = [p for p in pods if p.get("status", {}).get("phase") == "Failed"]
    failed.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)
    for pod in failed:
        for container in pod["status"].get("containerStatuses", []):
            message = container.get("state", {}).get("terminated", {}).get("message", "")
            if container.get("name") == "trainer" and message.strip():
                return " ".join(message.split())[:1024]
    return ""


def job_conditions(job: dict[str, Any] | None, trainer_error: str = "") -> list[Cond]:
    if job is None:
        return [
            Cond("Running", False, "Pending", "the training Job does not exist yet"),
            Cond("Succeeded", False, "Pending", "not started"),
            Cond("Failed", False, "Pending"),
        ]
    status = job.get("status", {})
    conds = {c["type"]: c for c in status.get("conditions", []) if c.get("status") == "True"}
    if "Complete" in conds:
        return [
            Cond("Running", False, "Completed"),
            Cond("Succeeded", True, "Succeeded", "training finished; the adapter is written"),
            Cond("Failed", False, "Succeeded"),
        ]
    if "Failed" in conds:
        message = conds["Failed"].get("message", "")
        if trainer_error:
            message = f"{trainer_error} ({message})" if message else trainer_error
        return [
            Cond("Running", False, "Failed"),
            Cond("Succeeded", False, "Failed", message),
            Cond("Failed", True, conds["Failed"].get("reason", "JobFailed"), message),
        ]
    if "Suspended" in conds:
        return [
            Cond("Running", False, "Suspended", "spec.suspend is true: training is stopped"),
            Cond("Succeeded", False, "Suspended", "resumes from its last checkpoint when unset"),
            Cond("Failed", False, "Suspended"),
        ]
    active = status.get("active", 0)
    return [
        Cond(
            "Running",
            active > 0,
            "Training" if active else "Starting",
            f"{active} training pod(s) running" if active else "waiting for the training pod",
        ),
        Cond("Succeeded", False, "Running" if active else "Starting"),
        Cond("Failed", False, "Running"),
    ]


def times(job: dict[str, Any] | None) -> tuple[str, str]:
    status = (job or {}).get("status", {})
    return status.get("startTime", ""), status.get("completionTime", "")


def finished(status: Mapping[str, Any]) -> bool:
    """Whether a FineTuneJob's status already says it succeeded or failed."""
    return any(
        c.get("type") in ("Succeeded", "Failed") and c.get("status") == "True"
        for c in status.get("conditions", [])
    )
