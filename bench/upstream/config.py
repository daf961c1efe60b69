"""What one run measures: rounds, durations, concurrency levels, and where the load runs."""

import argparse
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.serving.config import positive_ints

RESULTS_PATH = Path("bench/results/upstream.json")


@dataclass(frozen=True)
class Plan:
    rounds: int  # interleaved rounds; every reported figure is a median over them
    latency_s: float  # one wrk run at one connection
    throughput_s: float  # one wrk run per concurrency level
    concurrency: tuple[int, ...]  # max rps is the best of these
    settle_s: float  # idle after a system's throughput runs: a proxy drains what wrk left
    chunks: int  # content chunks per streamed completion
    client_s: float  # one client measurement
    client_concurrency: int
    litellm: bool
    clients: bool
    quick: bool
    output: Path


@dataclass(frozen=True)
class Pinning:
    """CPU sets for `taskset -c`; None runs unpinned."""

    loadgen: str | None  # wrk and the upstream
    system: str | None  # the proxy or the Python client under test
    note: str


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 round, short runs, @32 only")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument("--concurrency", help="comma-separated wrk connections (default 8,32,64)")
    parser.add_argument("--chunks", type=int, default=16, help="content chunks per stream")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM proxy")
    parser.add_argument("--no-clients", action="store_true", help="skip the Python clients")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    return parser.parse_args(argv)


def build_plan(args: argparse.Namespace) -> Plan:
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    if rounds < 1:
        raise SystemExit(f"--rounds needs a positive integer, got {rounds}")
    default_levels = (32,) if args.quick else (8, 32, 64)
    return Plan(
        rounds=rounds,
        latency_s=1.0 if args.quick else 2.0,
        throughput_s=1.0 if args.quick else 2.0,
        concurrency=positive_ints(args.concurrency) if args.concurrency else default_levels,
        settle_s=0.5 if args.quick else 1.0,
        chunks=args.chunks,
        client_s=0.5 if args.quick else 1.5,
        client_concurrency=32,
        litellm=not args.no_litellm,
        clients=not args.no_clients,
        quick=args.quick,
        output=args.output,
    )


def pinning(enabled: bool) -> Pinning:
    """On 2+ CPUs: wrk and the upstream share the first, the system under test gets the second,
    the same for every system, so no proxy competes with its own load generator."""
    cpus = sorted(os.sched_getaffinity(0))
    if not enabled or len(cpus) < 2 or shutil.which("taskset") is None:
        why = "disabled" if not enabled else "fewer than 2 CPUs or no taskset"
        return Pinning(None, None, f"unpinned ({why}): every process shares all {len(cpus)} CPUs")
    loadgen, system = str(cpus[0]), str(cpus[1])
    note = (
        f"pinned with taskset: wrk and the upstream on CPU {loadgen}, the proxy or Python"
        f" client under test alone on CPU {system} (of {len(cpus)})"
    )
    return Pinning(loadgen, system, note)
