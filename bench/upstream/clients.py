"""The `openai` client against ours, from Python, straight at the local upstream (no proxy).

Runs in its own process, pinned to the CPU the proxies had, and prints one JSON line:
`python -m bench.upstream.clients --base-url URL [--seconds S] [--rounds N]`.
Each mode is timed for `seconds` per client per round, clients alternating, first client
rotated every round; calls/s is the median over rounds.
"""

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.upstream.client_calls import Calls, NativeCalls, OpenAICalls, native_client_class

CLIENTS = ("openai", "modelkube_native")
WARM_UP_CALLS = 20
Mode = tuple[str, bool, int, bool]  # name, is_async, concurrency, stream


def timed_sync(call: Callable[[], None], seconds: float) -> dict[str, float]:
    durations: list[int] = []
    start = time.perf_counter_ns()
    deadline = start + int(seconds * 1e9)
    now = start
    while now < deadline:
        call()
        durations.append(time.perf_counter_ns() - now)
        now = time.perf_counter_ns()
    return _rates(durations, now - start)


async def timed_async(
    call: Callable[[], Awaitable[None]], seconds: float, concurrency: int
) -> dict[str, float]:
    durations: list[int] = []
    start = time.perf_counter_ns()
    deadline = start + int(seconds * 1e9)

    async def worker() -> None:
        while (began := time.perf_counter_ns()) < deadline:
            await call()
            durations.append(time.perf_counter_ns() - began)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return _rates(durations, time.perf_counter_ns() - start)


def _rates(durations: list[int], elapsed_ns: int) -> dict[str, float]:
    return {
        "calls": len(durations),
        "calls_per_s": len(durations) / (elapsed_ns / 1e9),
        "p50_us": statistics.median(durations) / 1000,
    }


def modes(concurrency: int) -> list[Mode]:
    """(name, is_async, concurrency, stream) per table row."""
    rows = [("sync", False, 1, False), ("sync stream", False, 1, True)]
    for c in (1, concurrency):
        rows += [(f"async x{c}", True, c, False), (f"async x{c} stream", True, c, True)]
    return rows


async def _measure_async(calls: Calls, c: int, stream: bool, seconds: float) -> dict[str, float]:
    call = calls.astream if stream else calls.acall
    for _ in range(2):
        await asyncio.gather(*(call() for _ in range(c)))
    return await timed_async(call, seconds, c)


async def _measure(calls: Calls, mode: Mode, seconds: float) -> dict[str, float]:
    _, is_async, c, stream = mode
    if is_async:
        return await _measure_async(calls, c, stream, seconds)
    call = calls.stream if stream else calls.call
    for _ in range(WARM_UP_CALLS):
        call()
    return timed_sync(call, seconds)


async def run(base_url: str, seconds: float, rounds: int, concurrency: int) -> dict[str, Any]:
    """Everything async runs in this one event loop: the async clients keep their pools."""
    clients: dict[str, Calls] = {"openai": OpenAICalls(base_url)}
    out: dict[str, Any] = {"errors": {}, "modes": {}}
    native, why_not = native_client_class()
    if native is None:
        out["errors"]["modelkube_native"] = why_not
    else:
        clients["modelkube_native"] = NativeCalls(native, base_url)
    for mode in modes(concurrency):
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
        for index in range(rounds):
            names = list(clients)[index % len(clients) :] + list(clients)[: index % len(clients)]
            for name in names:
                if name in out["errors"]:
                    continue
                try:
                    runs[name].append(await _measure(clients[name], mode, seconds))
                except Exception as error:  # one client's failure must not hide the others
                    out["errors"][name] = f"{mode[0]}: {type(error).__name__}: {error}"
        out["modes"][mode[0]] = {name: _median(r) for name, r in runs.items() if r}
    return out


def _median(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "calls_per_s": statistics.median(r["calls_per_s"] for r in runs),
        "p50_us": statistics.median(r["p50_us"] for r in runs),
        "calls_per_s_per_round": [r["calls_per_s"] for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream.clients")
    parser.add_argument("--base-url", required=True, help="the upstream, ending in /v1")
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    result = asyncio.run(run(args.base_url, args.seconds, args.rounds, args.concurrency))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
