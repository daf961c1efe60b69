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


def job_conditions(
    job: dict[str, Any] | None, trainer_error: str = "", pending_reason: str = ""
) -> list[Cond]:
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
    if status.get("ready", 0) > 0:
        return [
            Cond("Running", True, "Training", "the training pod is running"),
            Cond("Succeeded", False, "Running"),
            Cond("Failed", False, "Running"),
        ]
    # Not running yet: a pod that waits says why (no node fits, a claim not bound, an image
    # that cannot be pulled), instead of "running" for a pod that never started.
    why = pending_reason or "waiting for the training pod"
    return [
        Cond("Running", False, "Pending", why),
        Cond("Succeeded", False, "Pending", why),
        Cond("Failed", False, "Pending"),
    ]


def pending_reason(pods: list[dict[str, Any]]) -> str:
    """Why the newest training pod is not running yet, from its status ("" if it gives none)."""
    pods = sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)
    for pod in pods[:1]:
        status = pod.get("status", {})
        for cond in status.get("conditions", []):
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                return _said(cond.get("reason", "Unschedulable"), cond.get("message", ""))
        for container in status.get("containerStatuses", []):
            waiting = container.get("state", {}).get("waiting")
            if waiting:
                return _said(waiting.get("reason", "Waiting"), waiting.get("message", ""))
    return ""


def _said(reason: str, message: str) -> str:
    text = " ".join(message.split())[:512]
    return f"the training pod is pending: {reason}" + (f": {text}" if text else "")


def times(job: dict[str, Any] | None) -> tuple[str, str]:
    status = (job or {}).get("status", {})
    return status.get("startTime", ""), status.get("completionTime", "")


def finished(status: Mapping[str, Any]) -> bool:
    """Whether a FineTuneJob's status already says it succeeded or failed."""
    return any(
        c.get("type") in ("Succeeded", "Failed") and c.get("status") == "True"
        for c in status.get("conditions", [])
    )
