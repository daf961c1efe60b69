"""Plain-text tables of the results, with the ratios the targets are judged on."""

from typing import Any

from bench.serving.report import fmt, ratio
from bench.upstream.proxies import MODES

PROXY_HEADER = (
    f"{'system':<14}| {'p50 ms':>7} | {'p95 ms':>7} | {'added p50':>9} | {'added p95':>9} "
    f"| {'max rps':>8} | {'@conns':>6} | {'vs LiteLLM':>10} | {'errors':>6}"
)
CLIENT_HEADER = (
    f"{'mode':<17}| {'openai':>9} | {'p50 us':>8} | {'modelkube_native':>16} | {'p50 us':>8} "
    f"| {'ratio':>6}"
)


def summary(proxies: dict[str, Any], system: str, mode: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = proxies.get(system, {}).get("modes", {}).get(mode)
    return found


def added(proxies: dict[str, Any], system: str, mode: str, key: str) -> float | None:
    this, direct = summary(proxies, system, mode), summary(proxies, "direct", mode)
    return this[key] - direct[key] if this and direct and system != "direct" else None


def _proxy_row(proxies: dict[str, Any], system: str, mode: str) -> str:
    entry = proxies[system]
    if "modes" not in entry:
        return f"{system:<14}| {entry.get('skipped') or entry.get('error')}"
    s = entry["modes"][mode]
    litellm = summary(proxies, "litellm proxy", mode)
    vs = ratio(s["max_rps"], litellm["max_rps"]) if litellm else None
    cells = (
        fmt(s["p50_ms"]).rjust(7), fmt(s["p95_ms"]).rjust(7),
        fmt(added(proxies, system, mode, "p50_ms")).rjust(9),
        fmt(added(proxies, system, mode, "p95_ms")).rjust(9),
        fmt(s["max_rps"]).rjust(8), str(s["max_rps_connections"]).rjust(6),
        (f"{vs:.2f}x" if vs else "-").rjust(10), str(s["errors"]).rjust(6),
    )  # fmt: skip
    return f"{system:<14}| " + " | ".join(cells)


def proxy_tables(proxies: dict[str, Any], chunks: int, pin_note: str) -> str:
    lines = []
    for mode in MODES:
        what = f"{chunks} content chunks per stream" if mode == "streaming" else "one completion"
        lines += [f"== proxies vs the same local upstream: {mode} ({what})", PROXY_HEADER]
        lines += [_proxy_row(proxies, system, mode) for system in proxies]
        lines.append("")
    lines += [
        "(p50/p95: one connection, whole response, median over rounds; added = minus direct;",
        " max rps: best wrk connection count, median over rounds; errors: non-2xx, timeouts)",
        f"  {pin_note}",
    ]
    for system, entry in proxies.items():
        for mode, s in entry.get("modes", {}).items():
            per_round = "/".join(f"{r:.0f}" for r in s["max_rps_per_round"])
            lines.append(f"  {system} {mode}: max rps per round {per_round}")
    return "\n".join(lines)


def client_ratio(row: dict[str, Any]) -> float | None:
    ours, theirs = row.get("modelkube_native"), row.get("openai")
    return ratio(ours["calls_per_s"], theirs["calls_per_s"]) if ours and theirs else None


def _cell(row: dict[str, Any], name: str, key: str, width: int) -> str:
    return fmt(row[name][key] if name in row else None).rjust(width)


def client_table(clients: dict[str, Any]) -> str:
    lines = ["== clients from Python, straight at the upstream: calls/s (higher is better)"]
    if "skipped" in clients:
        return "\n".join([*lines, f"  skipped: {clients['skipped']}"])
    lines.append(CLIENT_HEADER)
    for mode, row in clients.get("modes", {}).items():
        r = client_ratio(row)
        cells = (
            _cell(row, "openai", "calls_per_s", 9), _cell(row, "openai", "p50_us", 8),
            _cell(row, "modelkube_native", "calls_per_s", 16),
            _cell(row, "modelkube_native", "p50_us", 8), (f"{r:.2f}x" if r else "-").rjust(6),
        )  # fmt: skip
        lines.append(f"{mode:<17}| " + " | ".join(cells))
    lines.append("(ratio = UpstreamClient calls/s over openai's; p50 us per call)")
    if clients.get("error"):
        lines.append(f"  ERROR {clients['error']}")
    for name, message in clients.get("errors", {}).items():
        lines.append(f"  {name}: {message}")
    return "\n".join(lines)
