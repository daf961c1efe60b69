"""`python -m bench.serving.adapter_mix`: what base and adapter traffic at once cost each engine.

llama.cpp sets LoRA adapters on its context for a whole decode, so the base's rows and an
adapter's are decoded in steps of their own, in turn, and each change of the adapter set makes
llama.cpp plan its graph again (`sched_need_reserve`). MLX runs each variant in a batch of its
own too. Each engine serves the real model with one LoRA adapter, and the same closed-loop
streaming load runs on it twice, in interleaved rounds: every request on the base ("base"),
then every other request on the adapter ("mixed"). Reported: tok/s of each, mixed over base per
engine, and llama.cpp's ratio over MLX's.
"""

import argparse
import asyncio
import statistics
from pathlib import Path

from bench.serving.client import LoadRun, RequestResult, make_client, stream_chat
from bench.serving.config import REQUEST_TIMEOUT_S
from bench.serving.prompts import chat_body, messages_for
from bench.serving.runner import load_average, log, model_paths
from bench.serving.servers import Server, running_server
from bench.serving.stats import summarise_round
from modelkube_serving.models.builtin import cache_root

MODEL = "smollm2-135m-instruct"
SYSTEMS = ("ours-llamacpp", "ours")  # llama.cpp and MLX, both ours
NAMES = {"ours-llamacpp": "llamacpp", "ours": "mlx"}
ADAPTER = "tuned"


def default_adapter() -> Path | None:
    """The newest adapter the real-model adapter test trained (kept in the model cache)."""
    found = sorted((cache_root() / "test-adapters").glob("*/adapters.safetensors"))
    return max(found, key=lambda p: p.stat().st_mtime).parent if found else None


async def run_mixed(
    server: Server, models: list[str], concurrency: int, requests: int, first: int, tokens: int
) -> LoadRun:
    """`concurrency` closed-loop clients; request `i` goes to `models[i % len(models)]`."""
    pending = list(range(first, first + requests))
    results: list[RequestResult] = []

    async def worker() -> None:
        async with make_client(server.base_url, 1, REQUEST_TIMEOUT_S) as client:
            while pending:
                index = pending.pop(0)
                body = chat_body(models[index % len(models)], messages_for(index), tokens)
                results.append(await stream_chat(client, body, REQUEST_TIMEOUT_S))

    start = asyncio.get_running_loop().time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = asyncio.get_running_loop().time() - start
    return LoadRun(concurrency=concurrency, first=first, wall_s=wall, results=results)


async def measure(
    servers: dict[str, Server], args: argparse.Namespace
) -> dict[str, dict[str, list[float]]]:
    """tok/s of each system and load ("base", "mixed"), per round."""
    rates: dict[str, dict[str, list[float]]] = {s: {"base": [], "mixed": []} for s in servers}
    loads = {"base": [MODEL], "mixed": [MODEL, f"{MODEL}:{ADAPTER}"]}
    first = 0
    for round_index in range(args.rounds):
        order = list(servers.items())
        if round_index % 2:
            order.reverse()  # drift on the machine falls on both alike
        for name, server in order:
            for load in ("base", "mixed") if round_index % 2 == 0 else ("mixed", "base"):
                run = await run_mixed(
                    server, loads[load], args.concurrency, args.requests, first, args.max_tokens
                )
                summary = summarise_round(run)
                if summary.errors:
                    errors = {r.error for r in run.results if r.error}
                    raise RuntimeError(f"{name} {load}: {summary.errors} failed: {errors}")
                rates[name][load].append(summary.tok_per_s)
                log(f"round {round_index + 1} {name} {load}: {summary.tok_per_s:.1f} tok/s")
                first += args.requests
    return rates


def table(rates: dict[str, dict[str, list[float]]]) -> str:
    lines = [
        "| engine | base tok/s | base+adapter tok/s | mixed / base |",
        "|---|---:|---:|---:|",
    ]
    ratios = {}
    for system, by_load in rates.items():
        base, mixed = statistics.mean(by_load["base"]), statistics.mean(by_load["mixed"])
        ratios[system] = mixed / base
        lines.append(f"| {NAMES[system]} | {base:.1f} | {mixed:.1f} | {ratios[system]:.2f}x |")
    if len(ratios) == 2:
        llama, mlx = ratios["ours-llamacpp"], ratios["ours"]
        lines.append(f"\nmixed/base, llamacpp over mlx: **{llama / mlx:.2f}x**")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serving.adapter_mix")
    parser.add_argument("--adapter", type=Path, default=default_adapter(), help="LoRA directory")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=32, help="per round and load")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if args.adapter is None:
        parser.error(
            "no adapter: pass --adapter (tests/serving/test_real_model_adapter.py trains one)"
        )
    paths = model_paths(MODEL)
    extra = (f"--adapter={ADAPTER}={args.adapter}",)
    log(f"load average (1/5/15 min): {load_average()}; adapter {args.adapter}")
    with (
        running_server(SYSTEMS[0], MODEL, paths[SYSTEMS[0]], extra=extra) as llama,
        running_server(SYSTEMS[1], MODEL, paths[SYSTEMS[1]], extra=extra) as mlx,
    ):
        rates = asyncio.run(measure({SYSTEMS[0]: llama, SYSTEMS[1]: mlx}, args))
    print(table(rates))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
