"""The table: each mode's cache hit rate, later-turn TTFT, throughput, and the ratios."""

import statistics
from typing import Any

from bench.gateway.sessions import Turn


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(turns: list[Turn], wall_s: float) -> dict[str, Any]:
    later = [t.ttft_s for t in turns if t.turn >= 2]
    prompt = sum(t.prompt_tokens for t in turns)
    return {
        "requests": len(turns),
        "hit_rate": (hit := sum(t.cached_tokens for t in turns) / prompt if prompt else 0.0),
        "miss_rate": 1 - hit,
        "later_ttft_p50_ms": statistics.median(later) * 1000,
        "later_ttft_p95_ms": percentile(later, 0.95) * 1000,
        "req_per_s": len(turns) / wall_s,
        "tok_per_s": sum(t.completion_tokens for t in turns) / wall_s,
    }


def table(direct: dict[str, Any], gateway: dict[str, Any], added_ms: float) -> str:
    rows = [
        ("prefix-cache hit rate", "hit_rate", "{:.1%}", "x"),
        ("prefix-cache miss rate", "miss_rate", "{:.1%}", "x"),
        ("TTFT p50, turns 2-4 (ms)", "later_ttft_p50_ms", "{:.1f}", "x"),
        ("TTFT p95, turns 2-4 (ms)", "later_ttft_p95_ms", "{:.1f}", "x"),
        ("throughput (req/s)", "req_per_s", "{:.2f}", "x"),
        ("throughput (generated tok/s)", "tok_per_s", "{:.1f}", "x"),
    ]
    lines = [
        f"| {'metric':<30} | {'direct random':>14} | {'gateway':>10} | {'gateway/direct':>14} |",
        f"|{'-' * 32}|{'-' * 15}:|{'-' * 11}:|{'-' * 15}:|",
    ]
    for title, key, fmt, _ in rows:
        a, b = direct[key], gateway[key]
        ratio = f"{b / a:.2f}x" if a else "-"
        lines.append(f"| {title:<30} | {fmt.format(a):>14} | {fmt.format(b):>10} | {ratio:>14} |")
    lines.append(
        f"| {'gateway added latency p50 (ms)':<30} | {'':>14} | {added_ms:>10.2f} | {'':>14} |"
    )
    return "\n".join(lines)
