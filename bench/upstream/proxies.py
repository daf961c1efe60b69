"""Direct calls, our proxy and the LiteLLM proxy under the same wrk load, interleaved.

Every round runs, per mode, each system's one-connection latency run and its throughput runs,
the order of systems rotated every round so that drift on the machine falls on all alike.
"""

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.upstream.config import Pinning, Plan
from bench.upstream.load import run_wrk, write_script
from bench.upstream.processes import SERVED_MODEL, Endpoint, paused

MODES = ("non-streaming", "streaming")
BODY = {
    "model": SERVED_MODEL,
    "messages": [{"role": "user", "content": "Say hello."}],
    "max_tokens": 16,
}
WARM_UP_S = 1.0


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def body(mode: str) -> dict[str, Any]:
    return {**BODY, "stream": True} if mode == "streaming" else dict(BODY)


def rotated(items: list[Endpoint], index: int) -> list[Endpoint]:
    start = index % len(items) if items else 0
    return items[start:] + items[:start]


def check(endpoint: Endpoint, mode: str) -> None:
    """One request by hand: a 200 with a completion (or a stream ending in [DONE])."""
    response = httpx.post(f"{endpoint.base_url}/chat/completions", json=body(mode), timeout=30)
    text = response.text
    ok = response.status_code == 200 and (
        text.rstrip().endswith("data: [DONE]")
        if mode == "streaming"
        else bool(response.json()["choices"][0]["message"]["content"])
    )
    if not ok:
        raise RuntimeError(f"{endpoint.system} {mode}: HTTP {response.status_code} {text[:300]}")


def measure(endpoints: list[Endpoint], plan: Plan, pin: Pinning) -> dict[str, Any]:
    """Raw wrk results: system -> mode -> list over rounds of {latency, levels}.

    In each round every system's one-connection latency run comes first, on a machine at rest,
    then the throughput runs: a proxy still draining what wrk left at 64 connections (LiteLLM
    takes seconds) would otherwise sit in the next system's latency. The systems not under
    test are paused meanwhile."""
    raw: dict[str, Any] = {e.system: {mode: [] for mode in MODES} for e in endpoints}
    with tempfile.TemporaryDirectory(prefix="bench-upstream-") as tmp:
        scripts = {mode: write_script(Path(tmp), mode, body(mode)) for mode in MODES}
        for endpoint in endpoints:
            for mode in MODES:
                url = f"{endpoint.base_url}/chat/completions"
                run_wrk(url, scripts[mode], max(plan.concurrency), WARM_UP_S, pin.loadgen)
                time.sleep(plan.settle_s)
        for index in range(plan.rounds):
            for mode in MODES:
                order = rotated(endpoints, index)
                latency = {}
                for endpoint in order:
                    with _alone(endpoint, endpoints):
                        url = f"{endpoint.base_url}/chat/completions"
                        latency[endpoint.system] = run_wrk(
                            url, scripts[mode], 1, plan.latency_s, pin.loadgen
                        )
                for endpoint in order:
                    with _alone(endpoint, endpoints):
                        url = f"{endpoint.base_url}/chat/completions"
                        levels = [
                            run_wrk(url, scripts[mode], c, plan.throughput_s, pin.loadgen)
                            for c in plan.concurrency
                        ]
                        # wrk stops with requests in flight; a slow proxy is still serving
                        # them, on the CPU the next system under test gets.
                        time.sleep(plan.settle_s)
                    runs = {"latency": latency[endpoint.system], "levels": levels}
                    raw[endpoint.system][mode].append(runs)
                done = ", ".join(f"{s} {_round_line(r[mode][-1])}" for s, r in raw.items())
                log(f"round {index + 1}/{plan.rounds} {mode}: {done}")
    return raw


def _alone(endpoint: Endpoint, endpoints: list[Endpoint]) -> Any:
    return paused([e for e in endpoints if e is not endpoint and e.system != "direct"])


def _round_line(runs: dict[str, Any]) -> str:
    best = max(level["rps"] for level in runs["levels"])
    return f"p50 {runs['latency']['p50_us'] / 1000:.2f} ms, {best:.0f} rps"


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds: p50/p95 at one connection, rps per level; max rps is the best level."""
    p50 = statistics.median(r["latency"]["p50_us"] for r in rounds) / 1000
    p95 = statistics.median(r["latency"]["p95_us"] for r in rounds) / 1000
    rps: dict[int, float] = {}
    for position, level in enumerate(rounds[0]["levels"]):
        rps[level["connections"]] = statistics.median(r["levels"][position]["rps"] for r in rounds)
    best = max(rps, key=lambda c: rps[c])
    runs = [run for r in rounds for run in (r["latency"], *r["levels"])]
    return {
        "p50_ms": p50, "p95_ms": p95, "rps_by_connections": rps, "max_rps": rps[best],
        "max_rps_connections": best, "errors": sum(run["errors"] for run in runs),
        "requests": sum(run["requests"] for run in runs),
        "max_rps_per_round": [max(lv["rps"] for lv in r["levels"]) for r in rounds],
    }  # fmt: skip
