"""A fine-tuning job's OpenAI events, synthesized from its FineTuneJob: pure, no I/O.

A FineTuneJob keeps no event log, only where it stands now, so the events are its milestones
(created, started, the latest progress report, how it ended), each with a stable id so that
`after` pagination works across calls.
"""

from typing import Any

from modelkube_serving.services.fine_tuning_mapping import (
    CANCELLED_ANNOTATION,
    Target,
    condition,
    failure,
    job_id,
    status_of,
    unix,
)

Obj = dict[str, Any]


def openai_events(ftj: Obj, target: Target) -> list[Obj]:
    """Newest first, as OpenAI lists them."""
    name = ftj["metadata"]["name"]
    status = ftj.get("status", {})
    created = unix(ftj["metadata"].get("creationTimestamp")) or 0
    events = [_event(name, "created", created, f"Created fine-tuning job: {job_id(name)}")]
    started = unix(status.get("startTime"))
    if started is not None:
        events.append(_event(name, "started", started, "Fine-tuning job started"))
    step = _progress_event(name, status.get("progress") or {}, started or created)
    if step is not None:
        events.append(step)
    # How it ended is the last word, even when clocks or a race (a Job started just after a
    # cancel) put an earlier milestone later.
    latest = max(int(e["created_at"]) for e in events)
    for ending in _ending(ftj, target):
        ending["created_at"] = max(int(ending["created_at"]), latest)
        events.append(ending)
    # sorted() keeps ties in input order, so reversing first puts the later milestone first.
    return sorted(reversed(events), key=lambda e: int(e["created_at"]), reverse=True)


def _progress_event(name: str, progress: Obj, fallback: int) -> Obj | None:
    iteration = progress.get("iteration") or 0
    if iteration <= 0:
        return None
    total = progress.get("totalIterations") or 0
    head = f"Step {iteration}/{total}"
    losses = [
        f"{label}={progress[key]}"
        for key, label in (("trainLoss", "training loss"), ("validationLoss", "validation loss"))
        if progress.get(key)
    ]
    message = f"{head}: {', '.join(losses)}" if losses else head
    data = {
        "step": iteration,
        "total_steps": total,
        "train_loss": _number(progress.get("trainLoss")),
        "valid_loss": _number(progress.get("validationLoss")),
    }
    at = unix(progress.get("updateTime")) or fallback
    return _event(name, f"step-{iteration}", at, message, data=data, type_="metrics")


def _ending(ftj: Obj, target: Target) -> list[Obj]:
    name, status = ftj["metadata"]["name"], status_of(ftj)
    if status == "succeeded":
        at = unix(ftj.get("status", {}).get("completionTime")) or _changed(ftj, "Succeeded")
        model = f"{target.model_name}:{name}"
        return [
            _event(name, "model", at, f"New fine-tuned model created: {model}"),
            _event(name, "succeeded", at, "The job has successfully completed"),
        ]
    if status == "failed":
        error = failure(ftj) or {}
        message = f"Fine-tuning job failed: {error.get('message') or 'training failed'}"
        return [_event(name, "failed", _changed(ftj, "Failed"), message, level="error")]
    if status == "cancelled":
        at = unix(ftj["metadata"].get("annotations", {}).get(CANCELLED_ANNOTATION)) or 0
        return [_event(name, "cancelled", at, "Fine-tuning job cancelled")]
    return []


def _changed(ftj: Obj, type_: str) -> int:
    cond = condition(ftj, type_) or {}
    return unix(cond.get("lastTransitionTime")) or 0


def _event(
    name: str,
    kind: str,
    created_at: int,
    message: str,
    *,
    level: str = "info",
    data: Obj | None = None,
    type_: str = "message",
) -> Obj:
    return {
        "object": "fine_tuning.job.event",
        "id": f"ftevent-{name}-{kind}",
        "created_at": created_at,
        "level": level,
        "message": message,
        "data": data or {},
        "type": type_,
    }


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None
