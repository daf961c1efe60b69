"""The results table and the targets."""

from dataclasses import dataclass
from typing import Any

TARGET_COUNT = 500
TARGET_CHILDREN_S = 30.0
TARGET_RSS_MB = 150.0

HEADERS = (
    "N",
    "apply (s)",
    "to all Deployments (s)",
    "to all children (s)",
    "to all Ready (s)",
    "Deployment ready -> Ready p50 / p95 (ms)",
    "latency p50 / p95 (ms)",
    "from t0 p50 / p95 (ms)",
    "RSS idle / peak (MB)",
    "CPU (s)",
    "CPU ms/object",
    "apiserver peak RSS (MB)",
)


@dataclass
class Target:
    name: str
    met: bool | None  # None: not measured in this run
    detail: str


def _num(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pair(stats: dict[str, Any]) -> str:
    return f"{_num(stats.get('p50'), 0)} / {_num(stats.get('p95'), 0)}"


def _upto(r: dict[str, Any], key: str, seen: int) -> str:
    """The time to the last one seen, with how many were seen when not all N."""
    text = _num(r[key], 2)
    return text if seen >= r["count"] else f"{text} (only {seen})"


def _row(r: dict[str, Any]) -> list[str]:
    count = str(r["count"]) + ("" if r["complete"] else " (incomplete)")
    seen = r["seen"]
    children = min(seen.get("deployments", 0), seen.get("services", 0))
    return [
        count,
        _num(r["apply_s"], 2),
        _upto(r, "to_all_deployments_s", seen.get("deployments", 0)),
        _upto(r, "to_all_children_s", children),
        _upto(r, "to_all_ready_s", seen.get("ready", 0)),
        _pair(r.get("status_lag_ms", {})),
        _pair(r["reconcile_ms"]),
        _pair(r["from_t0_ms"]),
        f"{_num(r['operator_rss_idle_mb'])} / {_num(r['operator_hwm_mb'])}",
        _num(r["operator_cpu_s"], 2),
        _num(r["cpu_ms_per_object"], 1),
        _num(r["apiserver_rss_peak_mb"], 0),
    ]


def table(rounds: list[dict[str, Any]]) -> str:
    rows = [list(HEADERS), *(_row(r) for r in rounds)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    lines = [" | ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


LEGEND = """\
apply: `kubectl apply --server-side` of all N in one multi-document YAML, from t0 until it returned.
to all ...: t0 until the last Deployment / Deployment+Service (ConfigMap goes first) / Ready=True
  was seen on a watch (client-side monotonic clock, ms resolution).
latency: per object, ModelService ADDED on the watch -> its Deployment ADDED on the watch.
Deployment ready -> Ready: per object, its Deployment's replicas all ready on the watch -> the
  ModelService's Ready=True on the watch (the operator's share of "to all Ready").
from t0: per object, t0 -> its Deployment ADDED (includes kubectl's own sequential apply time).
RSS peak: VmHWM of the operator process (fresh per N); CPU: utime+stime from t0 to all Ready."""


def _children_target(rounds: list[dict[str, Any]]) -> Target:
    name = f"{TARGET_COUNT} ModelServices to all children in <= {TARGET_CHILDREN_S:.0f} s"
    big = next((r for r in rounds if r["count"] == TARGET_COUNT), None)
    if big is None or big["to_all_children_s"] is None:
        return Target(name, None, f"{TARGET_COUNT} not measured")
    took, seen = big["to_all_children_s"], big["seen"]
    made = min(seen.get("deployments", 0), seen.get("services", 0))
    if made >= TARGET_COUNT:
        return Target(name, took <= TARGET_CHILDREN_S, f"{took:.2f} s")
    detail = f"only {made}/{TARGET_COUNT} before the wait ran out, the last at {took:.0f} s"
    return Target(name, False, detail)


def _rss_target(rounds: list[dict[str, Any]]) -> Target:
    name = f"operator peak RSS <= {TARGET_RSS_MB:.0f} MB"
    peaks = [r["operator_hwm_mb"] for r in rounds if r["operator_hwm_mb"] is not None]
    if not peaks:
        return Target(name, None, "not measured")
    return Target(name, max(peaks) <= TARGET_RSS_MB, f"{max(peaks):.1f} MB")


def evaluate(rounds: list[dict[str, Any]]) -> list[Target]:
    return [_children_target(rounds), _rss_target(rounds)]


def targets_text(targets: list[Target]) -> str:
    verdict = {True: "MET", False: "NOT MET", None: "NOT MEASURED"}
    return "\n".join(f"target: {t.name}: {verdict[t.met]} ({t.detail})" for t in targets)
