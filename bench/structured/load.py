"""`python -m bench.structured.load`: throughput and time to first token at C clients with every
request constrained to a JSON schema, against the same requests unconstrained.

One `modelkube serve` process on the real model per engine (`--engines`: MLX with OpenBLAS
preloaded, llama.cpp serving the GGUF file as it is; the masks come from the same core code on
both). Both runs send the same
prompts, greedy, with `ignore_eos` and the same `max_tokens`, so both generate exactly the same
number of tokens: a constrained row whose grammar completes goes on with its end-of-sequence
token only. The free run goes first and again last, so drift on a shared machine shows. Prints
each engine's ratio (target: constrained >= 0.9x) and writes bench/results/structured_load.json.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.serving.client import RequestResult, make_client, stream_chat
from bench.serving.prompts import chat_body, messages_for
from bench.serving.servers import running_server
from bench.structured.__main__ import CASES
from modelkube_serving.models.uri import resolve_model

MODEL = "smollm2-135m-instruct"
SCHEMA = CASES["order"][0]


def body(index: int, max_tokens: int, constrained: bool) -> dict[str, Any]:
    request = chat_body(MODEL, messages_for(index), max_tokens)
    request["ignore_eos"] = True
    if constrained:
        spec = {"name": "order", "schema": SCHEMA, "strict": True}
        request["response_format"] = {"type": "json_schema", "json_schema": spec}
    return request


async def load(
    url: str, clients: int, requests: int, max_tokens: int, constrained: bool
) -> dict[str, Any]:
    pending = list(range(requests))
    results: list[RequestResult] = []

    async def worker(client: Any) -> None:
        while pending:
            index = pending.pop(0)
            results.append(await stream_chat(client, body(index, max_tokens, constrained), 600))

    async with make_client(url, clients, 600) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        wall = time.perf_counter() - start
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{len(failed)} requests failed, e.g. {failed[0]}")
    tokens = sum(r.completion_tokens for r in results)
    ttfts = [r.ttft_s for r in results if r.ttft_s is not None]
    return {
        "constrained": constrained,
        "requests": requests,
        "completion_tokens": tokens,
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "ttft_p50_ms": statistics.median(ttfts) * 1e3,
        "ttft_p90_ms": sorted(ttfts)[int(0.9 * (len(ttfts) - 1))] * 1e3,
    }


# `--engines` names -> bench.serving's systems.
SYSTEMS = {"mlx": "ours", "llamacpp": "ours-llamacpp"}


def table(runs: list[dict[str, Any]], clients: int) -> str:
    lines = [f"{'run':<14} {'clients':>7} {'tokens':>7} {'tok/s':>8} {'TTFT p50 ms':>12} "
             f"{'TTFT p90 ms':>12}"]  # fmt: skip
    for name, r in zip(("free", "constrained", "free (again)"), runs, strict=True):
        lines.append(
            f"{name:<14} {clients:>7} {r['completion_tokens']:>7} {r['tokens_per_s']:>8.1f} "
            f"{r['ttft_p50_ms']:>12.0f} {r['ttft_p90_ms']:>12.0f}"
        )
    free = (runs[0]["tokens_per_s"] + runs[2]["tokens_per_s"]) / 2
    ratio = runs[1]["tokens_per_s"] / free
    lines.append(f"constrained / free throughput: {ratio:.2f}x (target >= 0.90x)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.structured.load", description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--engines", default="mlx,llamacpp", help="comma-separated: mlx,llamacpp")
    parser.add_argument("--output", type=Path, default=Path("bench/results/structured_load.json"))
    args = parser.parse_args(argv)
    path = resolve_model(f"builtin://{MODEL}")
    results: dict[str, list[dict[str, Any]]] = {}
    for engine in args.engines.split(","):
        with running_server(SYSTEMS[engine], MODEL, path, label="structured-load") as server:
            # Warm: the schema compiled and cached, the prompt cache's template prefix in place.
            asyncio.run(load(server.base_url, 2, 2, 4, constrained=True))
            results[engine] = [
                asyncio.run(load(server.base_url, args.clients, args.requests, args.max_tokens, c))
                for c in (False, True, False)
            ]
        print(f"engine {engine}:\n{table(results[engine], args.clients)}\n", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
