"""The runtime's own overhead per token on llama.cpp: the bare LlamaEngine step loop (no HTTP,
bench/serving/overhead_worker.py) against the same engine served by `modelkube serve --engine
llamacpp` to streaming clients, on the same prompts, one process each, in interleaved rounds.

`python -m bench.serving.overhead [--concurrency 1,4,16] [--rounds 3] [--max-tokens 64]`
prints, per client count, the median tok/s of each, their ratio, and the overhead per generated
token: the served run's wall time per token less the bare loop's, in microseconds.
"""

import argparse
import asyncio
import contextlib
import statistics
import sys
from dataclasses import dataclass

from bench.serving.ceiling import running_ceiling
from bench.serving.client import run_load
from bench.serving.config import DEFAULT_MAX_TOKENS, REAL_MODEL, REQUEST_TIMEOUT_S, positive_ints
from bench.serving.runner import load_average, log, model_paths, round_order
from bench.serving.servers import running_server
from bench.serving.stats import summarise_round

SYSTEMS = ("bare", "served")


@dataclass(frozen=True)
class OverheadRow:
    concurrency: int
    bare_tok_per_s: float
    served_tok_per_s: float

    @property
    def ratio(self) -> float:
        return self.served_tok_per_s / self.bare_tok_per_s

    @property
    def overhead_us_per_token(self) -> float:
        return (1 / self.served_tok_per_s - 1 / self.bare_tok_per_s) * 1e6


def table(rows: list[OverheadRow]) -> str:
    lines = [
        "clients  bare tok/s  served tok/s  served/bare  overhead us/token",
        *(
            f"{r.concurrency:>7} {r.bare_tok_per_s:>11.1f} {r.served_tok_per_s:>13.1f}"
            f" {r.ratio:>11.2f}x {r.overhead_us_per_token:>18.0f}"
            for r in rows
        ),
    ]
    return "\n".join(lines)


async def _measure(levels: tuple[int, ...], rounds: int, max_tokens: int) -> list[OverheadRow]:
    paths = model_paths(REAL_MODEL)
    rows = []
    with running_server("ours-llamacpp", REAL_MODEL, paths["ours-llamacpp"]) as server:
        async with running_ceiling(REAL_MODEL, paths["ours"], kind="overhead") as bare:
            await run_load(
                server.base_url, server.model, 1, 1, 10**6, max_tokens, REQUEST_TIMEOUT_S
            )
            first = 0
            for concurrency in levels:
                requests = max(2 * concurrency, 8)
                measured: dict[str, list[float]] = {name: [] for name in SYSTEMS}
                for index in range(rounds):
                    for name in round_order(list(SYSTEMS), index):
                        if name == "bare":
                            raw = await bare.measure(concurrency, requests, first, max_tokens)
                            measured[name].append(float(raw["tok_per_s"]))
                        else:
                            run = await run_load(
                                server.base_url, server.model, concurrency, requests, first,
                                max_tokens, REQUEST_TIMEOUT_S,
                            )  # fmt: skip
                            measured[name].append(summarise_round(run).tok_per_s)
                    first += requests
                    log(f"@{concurrency} round {index + 1}/{rounds}: {measured}")
                medians = {name: statistics.median(values) for name, values in measured.items()}
                rows.append(OverheadRow(concurrency, medians["bare"], medians["served"]))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serving.overhead", description=__doc__)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS)
    args = parser.parse_args(argv)
    log(f"load average (1/5/15 min) before: {load_average()}")
    rows = asyncio.run(_measure(positive_ints(args.concurrency), args.rounds, args.max_tokens))
    print(f"\n== {REAL_MODEL} on llama.cpp: bare engine loop vs served (streaming) ==")
    print(table(rows))
    log(f"load average (1/5/15 min) after: {load_average()}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
