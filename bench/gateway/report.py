"""The tables: each mode's cache hit rates, later-turn TTFT, throughput, and the ratios."""

import statistics
from typing import Any

from bench.gateway.latency import AddedLatency
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
- turns 2-4 finding their history: the later turns whose pod had cached at least half of the
  conversation's own part of the prompt (beyond the shared prefix), and the TTFT p50 of those
  and of the rest: the gap is what a miss costs in prefill, what both share is mostly queueing.
- idle replica: TTFT of a last turn sent alone to an idle replica of that run, with its whole
  history cached and with only the shared prefix cached: prefill and one step, no queueing.
- throughput: turns, and generated tokens, per second of the whole run (in a paced run,
  mostly the pauses: what the users asked for, not what the replicas could do).
- paced: new sessions whose users pause before each later turn (the same pauses in both
  modes); the closed-loop tables keep every replica saturated, these leave room.
- gateway added latency p50: the p50 of 1-token requests through the gateway minus the p50 of
  the same requests sent straight to the pod it picks, interleaved, with an idle pause after
  each request (--latency-pause-ms, 20 by default) so that what one target still does after its
  answer (a gateway's bookkeeping, its event loop's next turn) is over before the next target is
  timed; it includes the extra loopback hop, so it moves with the machine's load. The floor is
  the same through a bare pass-through (bench/gateway/floor.py: uvicorn, no framework, the same
  native HTTP client), timed in the same loop: what any proxy of this kind adds here; and once
  more with the pass-through's upstream call on the event loop's own socket, which tells the
  native client's crossing into tokio and back from the rest of the floor; and once more served
  by the Rust core's HttpFront instead of uvicorn: what the relay adds with no event loop on its
  path."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(turns: list[Turn], wall_s: float, shared: int) -> dict[str, Any]:
    later = [t.ttft_s for t in turns if t.turn >= 2]
    # A later turn whose pod held its conversation's history against one that did not: the
    # TTFT each kind sees tells prefill of the uncached part from queueing behind others.
    found = [t.ttft_s for t in turns if t.turn >= 2 and _history_found(t, shared)]
    lost = [t.ttft_s for t in turns if t.turn >= 2 and not _history_found(t, shared)]
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
        "later_history_found": len(found) / len(later) if later else 0.0,
        "later_ttft_p50_found_ms": statistics.median(found) * 1000 if found else 0.0,
        "later_ttft_p50_lost_ms": statistics.median(lost) * 1000 if lost else 0.0,
        "req_per_s": len(turns) / wall_s,
        "tok_per_s": sum(t.completion_tokens for t in turns) / wall_s,
    }


def _history_found(turn: Turn, shared: int) -> bool:
    """At least half the conversation's own part of the prompt was cached (a new session's
    first words can match another's, "Session 1" and "Session 12", so any excess over the
    shared prefix is not enough)."""
    return 2 * (turn.cached_tokens - shared) >= turn.prompt_tokens - shared


ROWS = [
    ("prefix-cache hit rate", "hit_rate", "{:.1%}"),
    ("prefix-cache miss rate", "miss_rate", "{:.1%}"),
    ("shared prefix (tokens)", "shared_tokens", "{:d}"),
    ("per-session hit rate", "session_hit_rate", "{:.1%}"),
    ("TTFT p50, turns 2-4 (ms)", "later_ttft_p50_ms", "{:.1f}"),
    ("TTFT p95, turns 2-4 (ms)", "later_ttft_p95_ms", "{:.1f}"),
    ("turns 2-4 finding their history", "later_history_found", "{:.1%}"),
    ("  their TTFT p50 (ms)", "later_ttft_p50_found_ms", "{:.1f}"),
    ("  the others' TTFT p50 (ms)", "later_ttft_p50_lost_ms", "{:.1f}"),
    ("idle replica: TTFT, history (ms)", "idle_ttft_found_ms", "{:.1f}"),
    ("idle replica: TTFT, none (ms)", "idle_ttft_lost_ms", "{:.1f}"),
    ("throughput (req/s)", "req_per_s", "{:.2f}"),
    ("throughput (generated tok/s)", "tok_per_s", "{:.1f}"),
]


def table(title: str, direct: dict[str, Any], gateway: dict[str, Any]) -> str:
    lines = [
        title,
        "",
        f"| {'metric':<34} | {'direct random':>14} | {'gateway':>10} | {'gateway/direct':>14} |",
        f"|{'-' * 36}|{'-' * 15}:|{'-' * 11}:|{'-' * 15}:|",
    ]
    for name, key, fmt in ROWS:
        a, b = direct[key], gateway[key]
        ratio = f"{b / a:.2f}x" if a else "-"
        lines.append(f"| {name:<34} | {fmt.format(a):>14} | {fmt.format(b):>10} | {ratio:>14} |")
    return "\n".join(lines)


def latency_line(added: AddedLatency) -> str:
    return (
        f"gateway added latency p50: {added.gateway_ms:.2f} ms (the floor, a bare pass-through "
        f"on the same HTTP client: {added.floor_ms:.2f} ms; the gateway's own code: "
        f"{added.gateway_ms - added.floor_ms:.2f} ms). The floor on the event loop's own socket: "
        f"{added.asyncio_floor_ms:.2f} ms, so the native client's crossing into tokio and back "
        f"is {added.floor_ms - added.asyncio_floor_ms:.2f} ms of the floor. The same relay on "
        f"the Rust core's HttpFront: {added.front_floor_ms:.2f} ms"
        + (
            f". The gateway on that front (--front native): {added.fronted_gateway_ms:.2f} ms, "
            f"{added.fronted_gateway_ms / added.gateway_ms:.2f}x the gateway on uvicorn"
            if added.fronted_gateway_ms is not None
            else ""
        )
    )


def legs_table(rounds: list[dict[str, float]], legs: tuple[str, ...]) -> str:
    """One row per leg of a cold start: its median, min and max over the rounds."""
    lines = ["| leg | median (s) | min (s) | max (s) |", "|---|---:|---:|---:|"]
    for leg in legs:
        values = [r[leg] for r in rounds]
        lines.append(
            f"| {leg} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |"
        )
    return "\n".join(lines)
