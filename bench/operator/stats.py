"""Percentiles and a p50/p95/max summary of a list of latencies."""

from datetime import datetime
from typing import Any

from bench.serving.stats import percentile


def summary(values: list[float]) -> dict[str, float | int | None]:
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else None,
    }


def _created(obj: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(obj["metadata"]["creationTimestamp"].replace("Z", "+00:00"))


def creation_gaps_s(children: list[dict[str, Any]], owners: list[dict[str, Any]]) -> list[float]:
    """Child creationTimestamp minus its owner's, per name (server-side, 1 s resolution)."""
    born = {o["metadata"]["name"]: _created(o) for o in owners}
    return [
        (_created(c) - born[c["metadata"]["name"]]).total_seconds()
        for c in children
        if c["metadata"]["name"] in born
    ]
