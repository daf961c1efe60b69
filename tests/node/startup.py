"""Where a runtime pod's time from `kubectl apply` to its first answer goes, from what the
cluster records: the pod's timestamps and conditions, kubelet's events, and the runtime's own
log lines (`kubectl logs --timestamps`). Printed by the real-node tests, never asserted.

The API's timestamps (creation, conditions, events) have whole seconds; the log's have
nanoseconds. A phase between two API timestamps is therefore only good to a second.
"""

from datetime import datetime
from typing import Any

# "container start" ends at the runtime's first log line (its imports done).
PHASES = ("schedule", "sandbox+image", "container start", "model load", "Ready", "total")


def stamp(text: str) -> float:
    """An RFC 3339 time (the API's, or a log line's with nanoseconds) as a Unix time."""
    text = text.replace("Z", "+00:00")
    if "." in text:
        whole, rest = text.split(".", 1)
        digits = rest[: len(rest) - 6]  # the fraction, before the "+00:00" offset
        text = f"{whole}.{digits[:6].ljust(6, '0')}{rest[len(digits) :]}"
    return datetime.fromisoformat(text).timestamp()


def phases(
    pod: dict[str, Any], events: list[dict[str, Any]], log: list[str], loaded_mark: str
) -> dict[str, float]:
    """Seconds per phase for one pod. `log`: its `kubectl logs --timestamps` lines;
    `loaded_mark`: the runtime's line once the model is loaded."""
    created = stamp(pod["metadata"]["creationTimestamp"])
    conditions = {c["type"]: stamp(c["lastTransitionTime"]) for c in pod["status"]["conditions"]}
    pulled = [
        stamp(e["firstTimestamp"] or e["eventTime"]) for e in events if e["reason"] == "Pulled"
    ]
    first_line = stamp(log[0].split()[0])
    loaded = next(stamp(line.split()[0]) for line in log if loaded_mark in line)
    image_at = pulled[0] if pulled else conditions["PodScheduled"]
    return {
        "schedule": conditions["PodScheduled"] - created,
        "sandbox+image": image_at - conditions["PodScheduled"],
        "container start": first_line - image_at,
        "model load": loaded - first_line,
        "Ready": conditions["Ready"] - loaded,
        "total": conditions["Ready"] - created,
    }


def table(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table, one row per pod."""
    lines = [
        "| pod | " + " | ".join(PHASES) + " |",
        "|---|" + "---:|" * len(PHASES),
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[p]:.1f} s" for p in PHASES) + " |")
    return "\n".join(lines)
