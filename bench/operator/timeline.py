"""When each object was first seen, created, and Ready, from the watches' event times."""

from dataclasses import dataclass, field
from typing import Any


def _deployment_ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return int(status.get("readyReplicas") or 0) >= int((obj.get("spec") or {}).get("replicas", 1))


def _ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


@dataclass
class Timeline:
    """First-seen monotonic times per object name. Writers: watch threads; reader: the round.

    Each dict is only ever grown by one thread with setdefault, which the GIL makes atomic.
    """

    modelservices: dict[str, float] = field(default_factory=dict)
    ready: dict[str, float] = field(default_factory=dict)
    deployments: dict[str, float] = field(default_factory=dict)
    deployments_ready: dict[str, float] = field(default_factory=dict)  # all its replicas ready
    services: dict[str, float] = field(default_factory=dict)
    events: dict[str, list[float]] = field(
        default_factory=lambda: {"modelservices": [], "deployments": [], "services": []}
    )

    def events_after(self, start: float) -> dict[str, int]:
        """Watch events per resource since `start`: churn once everything is Ready."""
        return {kind: sum(t > start for t in times) for kind, times in self.events.items()}

    def on_modelservice(self, kind: str, obj: dict[str, Any], now: float) -> None:
        self.events["modelservices"].append(now)
        if kind == "DELETED":
            return
        name = obj["metadata"]["name"]
        self.modelservices.setdefault(name, now)
        if _ready(obj):
            self.ready.setdefault(name, now)

    def on_deployment(self, kind: str, obj: dict[str, Any], now: float) -> None:
        self.events["deployments"].append(now)
        if kind != "DELETED":
            self.deployments.setdefault(obj["metadata"]["name"], now)
            if _deployment_ready(obj):
                self.deployments_ready.setdefault(obj["metadata"]["name"], now)

    def on_service(self, kind: str, obj: dict[str, Any], now: float) -> None:
        self.events["services"].append(now)
        if kind != "DELETED":
            self.services.setdefault(obj["metadata"]["name"], now)


def latest(times: dict[str, float], t0: float) -> float | None:
    """Seconds from t0 to the last of `times`."""
    return max(times.values()) - t0 if times else None


def gaps_ms(later: dict[str, float], earlier: dict[str, float]) -> list[float]:
    """Per name in both: later minus earlier, in milliseconds."""
    return [(later[name] - earlier[name]) * 1000.0 for name in later if name in earlier]


def since_ms(times: dict[str, float], t0: float) -> list[float]:
    return [(value - t0) * 1000.0 for value in times.values()]
