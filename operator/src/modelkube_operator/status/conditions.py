"""Merging conditions: lastTransitionTime only moves when the status does."""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cond:
    type: str
    status: bool
    reason: str
    message: str = ""


def merge_conditions(
    previous: list[dict[str, Any]], new: list[Cond], generation: int, now: str
) -> list[dict[str, Any]]:
    before = {c.get("type"): c for c in previous}
    merged = []
    for cond in new:
        status = "True" if cond.status else "False"
        old = before.get(cond.type)
        since = old["lastTransitionTime"] if old and old.get("status") == status else now
        merged.append(
            {
                "type": cond.type,
                "status": status,
                "reason": cond.reason,
                "message": cond.message,
                "lastTransitionTime": since,
                "observedGeneration": generation,
            }
        )
    return merged


def transitions(
    previous: list[dict[str, Any]], merged: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Conditions whose status changed: each becomes an Event on the resource."""
    before = {c.get("type"): c.get("status") for c in previous}
    return [c for c in merged if before.get(c["type"]) != c["status"]]
