"""What one benchmark run measures: the ModelService counts, the wait bound, the output."""

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_COUNTS = (100, 300, 500)
QUICK_COUNTS = (20, 50)
RESULTS_PATH = Path("bench/results/operator.json")
LOG_ROOT = Path("bench/results/logs")
NODE_POD_CAPACITY = 1000  # the kwok node's `pods` capacity (tests/controlplane/cluster.py)


@dataclass(frozen=True)
class Plan:
    counts: tuple[int, ...]
    timeout_s: float
    output: Path
    log_dir: Path
    keep_workdir: bool
    settle_s: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.operator", description=__doc__)
    parser.add_argument("--counts", help="comma-separated counts (default 100,300,500)")
    parser.add_argument("--quick", action="store_true", help="counts 20,50")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound on each wait (s)")
    parser.add_argument(
        "--settle", type=float, default=10.0, help="watch for churn this long after all Ready (s)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    parser.add_argument(
        "--log-dir", type=Path, help="default bench/results/logs/operator-<time>, one per run"
    )
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep the control plane's directory"
    )
    return parser.parse_args(argv)


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise SystemExit(f"--counts needs comma-separated integers, got {text!r}") from exc
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise SystemExit(f"--counts needs distinct positive integers, got {text!r}")
    return counts


def build_plan(args: argparse.Namespace) -> Plan:
    default = QUICK_COUNTS if args.quick else DEFAULT_COUNTS
    counts = _counts(args.counts) if args.counts else default
    if sum(counts) > NODE_POD_CAPACITY:
        raise SystemExit(
            f"{sum(counts)} pods in all would not fit the kwok node's {NODE_POD_CAPACITY}"
        )
    if args.timeout <= 0:
        raise SystemExit("--timeout must be positive")
    if args.settle < 0:
        raise SystemExit("--settle must not be negative")
    log_dir = args.log_dir or LOG_ROOT / time.strftime("operator-%Y%m%d-%H%M%S")
    return Plan(counts, args.timeout, args.output, log_dir, args.keep_workdir, args.settle)
