"""Issue 7's targets and whether this run met them."""

from typing import Any

from bench.serving.report import ratio
from bench.serving.targets import Target
from bench.upstream.proxies import MODES
from bench.upstream.report import added, client_ratio, summary

ADDED_P50_MS = 1.0
VS_LITELLM = 3.0
VS_OPENAI = 1.0


def _added_latency(proxies: dict[str, Any], mode: str) -> Target:
    name = f"our proxy adds p50 <= {ADDED_P50_MS:g} ms ({mode})"
    extra = added(proxies, "modelkube", mode, "p50_ms")
    if extra is None:
        return Target(name, None, _why(proxies, "modelkube"))
    return Target(name, extra <= ADDED_P50_MS, f"{extra:.3f} ms")


def _vs_litellm(proxies: dict[str, Any], mode: str) -> Target:
    name = f"our proxy >= {VS_LITELLM:g}x the LiteLLM proxy's max rps ({mode})"
    ours, theirs = summary(proxies, "modelkube", mode), summary(proxies, "litellm proxy", mode)
    if not ours or not theirs:
        return Target(name, None, _why(proxies, "modelkube" if not ours else "litellm proxy"))
    r = ratio(ours["max_rps"], theirs["max_rps"]) or 0.0
    return Target(
        name, r >= VS_LITELLM, f"{r:.2f}x ({ours['max_rps']:.0f} vs {theirs['max_rps']:.0f})"
    )


def _vs_openai(clients: dict[str, Any], use: str) -> Target:
    """Every row of that use (whole and streamed; for async, 1 and many at once) must hold."""
    name = f"our client >= {VS_OPENAI:g}x the openai client's calls/s ({use}, every row)"
    rows = {m: client_ratio(r) for m, r in clients.get("modes", {}).items() if m.startswith(use)}
    measured = {m: r for m, r in rows.items() if r is not None}
    if not measured:
        why = clients.get("errors", {}).get("modelkube_native") or clients.get("error")
        return Target(name, None, why or clients.get("skipped") or "not measured")
    worst = min(measured, key=lambda m: measured[m])
    detail = f"worst {measured[worst]:.2f}x ({worst})"
    return Target(name, min(measured.values()) >= VS_OPENAI and len(measured) == len(rows), detail)


def _why(proxies: dict[str, Any], system: str) -> str:
    entry = proxies.get(system, {})
    return str(entry.get("skipped") or entry.get("error") or f"{system} not measured")


def evaluate(results: dict[str, Any]) -> list[Target]:
    proxies, clients = results["proxies"], results["clients"]
    targets = [_added_latency(proxies, mode) for mode in MODES]
    targets += [_vs_litellm(proxies, mode) for mode in MODES]
    return targets + [_vs_openai(clients, use) for use in ("sync", "async")]
