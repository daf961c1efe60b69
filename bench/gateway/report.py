"""The tables: each mode's cache hit rates, later-turn TTFT, throughput, and the ratios."""

import statistics
from typing import Any

from bench.gateway.sessions import Turn

LEGEND = """\
What the columns mean:
- direct random: each turn goes to a replica picked at random (what a Service does);
  gateway: every turn goes through `modelkube gateway` (prefix affinity bounded by load).
- prefix-cache hit rate: the server's cached_tokens over prompt tokens, every turn.
- shared prefix (tokens): what all sessions' prompts share (the system prompt, the chat
  template's start, "Session "), read after the run as the most cached tokens a probe found
  on any replica (a new session's first turn, sent straight to each replica): every replica
  caches it after its first request, whichever way requests are balanced.
- per-session hit rate: cached tokens beyond the shared prefix over prompt tokens beyond it:
  how much of each conversation's own history was found cached.
- TTFT p50/p95: time to the first streamed token of turns 2 and later, as the client sees it.
- throughput: turns, and generated tokens, per second of the whole run.
- gateway added latency p50: the p50 of 1-token requests through the gateway minus the p50 of
  the same requests sent straight to the pod it picks, interleaved; it includes the extra
  loopback hop, so it moves with the machine's load."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(turns: list[Turn], wall_s: float, shared: int) -> dict[str, Any]:
    later = [t.ttft_s for t in turns if t.turn >= 2]
    prompt = sum(t.prompt_tokens for t in turns)
    own_prompt = sum(max(0, t.prompt_tokens - shared) for t in turns)
    own_cached = sum(max(0, t.cached_tokens - shared) for t in turns)
    return {
        "requests": len(turns),
        "hit_rate": (hit := sum(t.cached_tokens for t in turns) / prompt if prompt else 0.0),
        "miss_rate": 1 - hit,
        "shared_tokens": shared,
        "session_hit_rate": own_cached / own_prompt if own_prompt else 0.0,
        "later_ttft_p50_ms": statistics.median(later) * 1000,
        "later_ttft_p95_ms": percentile(later, 0.95) * 1000,
        "req_per_s": len(turns) / wall_s,
        "tok_per_s": sum(t.completion_tokens for t in turns) / wall_s,
    }


ROWS = [
    ("prefix-cache hit rate", "hit_rate", "{:.1%}"),
    ("prefix-cache miss rate", "miss_rate", "{:.1%}"),
    ("shared prefix (tokens)", "shared_tokens", "{:d}"),
    ("per-session hit rate", "session_hit_rate", "{:.1%}"),
    ("TTFT p50, turns 2-4 (ms)", "later_ttft_p50_ms", "{:.1f}"),
    ("TTFT p95, turns 2-4 (ms)", "later_ttft_p95_ms", "{:.1f}"),
    ("throughput (req/s)", "req_per_s", "{:.2f}"),
    ("throughput (generated tok/s)", "tok_per_s", "{:.1f}"),
]


def table(title: str, direct: dict[str, Any], gateway: dict[str, Any]) -> str:
    lines = [
        title,
        "",
        f"| {'metric':<30} | {'direct random':>14} | {'gateway':>10} | {'gateway/direct':>14} |",
        f"|{'-' * 32}|{'-' * 15}:|{'-' * 11}:|{'-' * 15}:|",
    ]
    for name, key, fmt in ROWS:
        a, b = direct[key], gateway[key]
        ratio = f"{b / a:.2f}x" if a else "-"
        lines.append(f"| {name:<30} | {fmt.format(a):>14} | {fmt.format(b):>10} | {ratio:>14} |")
    return "\n".join(lines)


def latency_line(added_ms: float) -> str:
    return f"gateway added latency p50: {added_ms:.2f} ms"


def legs_table(rounds: list[dict[str, float]], legs: tuple[str, ...]) -> str:
    """One row per leg of a cold start: its median, min and max over the rounds."""
    lines = ["| leg | median (s) | min (s) | max (s) |", "|---|---:|---:|---:|"]
    for leg in legs:
        values = [r[leg] for r in rounds]
        lines.append(
            f"| {leg} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |"
        )
    return "\n".join(lines)
