"""Every metric the gateway exports; the dashboard's gateway row uses these names."""

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from modelkube_serving.metrics import PREFIX, RuntimeMetrics

GATEWAY_ROUTED = f"{PREFIX}_gateway_routed_total"
GATEWAY_HOLDS = f"{PREFIX}_gateway_holds_total"
GATEWAY_HOLD_SECONDS = f"{PREFIX}_gateway_hold_seconds"
GATEWAY_RETRIES = f"{PREFIX}_gateway_retries_total"
GATEWAY_SCALES = f"{PREFIX}_gateway_scales_total"

_HOLD_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class GatewayMetrics:
    """The gateway's collectors, beside the runtime's request counters and admission gauges
    (the same names, so the serving dashboard's request panels cover the gateway too)."""

    def __init__(self, runtime: RuntimeMetrics) -> None:
        self.runtime = runtime
        self._routed: dict[tuple[str, bool], Any] = {}
        r: CollectorRegistry = runtime.registry
        self.routed = Counter(
            GATEWAY_ROUTED,
            "Routing decisions by model: affinity (the conversation's own pod) or spill (its "
            "pod was over the load bound, so another took it).",
            ["model", "decision"],
            registry=r,
        )
        self.holds = Counter(
            GATEWAY_HOLDS,
            "Requests held for a model with no ready replica, by outcome (ready, timeout, gone,"
            " shutdown: the gateway stopped first).",
            ["model", "outcome"],
            registry=r,
        )
        self.hold_seconds = Histogram(
            GATEWAY_HOLD_SECONDS,
            "How long held requests waited for a ready replica.",
            ["model"],
            buckets=_HOLD_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            GATEWAY_RETRIES,
            "Requests sent again to another pod, by why (refused, gone, draining).",
            ["model", "reason"],
            registry=r,
        )
        self.scales = Counter(
            GATEWAY_SCALES,
            "Scale patches the gateway made: up (from zero, on a request) or down (to zero, idle).",
            ["model", "direction"],
            registry=r,
        )

    def routed_to(self, model: str, affinity: bool) -> Any:
        """The routing counter of a model and decision. Every pick counts one, and
        `labels()` costs about as much as the rest of the pick (a lock, a join, a lookup),
        so the children are kept: two per model the gateway has routed."""
        key = (model, affinity)
        child = self._routed.get(key)
        if child is None:
            child = self.routed.labels(model=model, decision="affinity" if affinity else "spill")
            self._routed[key] = child
        return child
