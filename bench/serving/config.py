"""What one benchmark run measures: models, concurrency levels, request counts, rounds."""

import argparse
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CONCURRENCY: dict[str, tuple[int, ...]] = {"tiny": (1, 4, 16, 64), "small": (1, 4, 16)}
QUICK_CONCURRENCY = (1, 4, 16)
DEFAULT_ROUNDS: dict[str, int] = {"tiny": 3, "small": 2}
QUICK_ROUNDS = 2
REQUEST_TIMEOUT_S = 120.0
RESULTS_PATH = Path("bench/results/serving.json")


@dataclass(frozen=True)
class Level:
    concurrency: int
    requests: int  # per system per round
    rounds: int


@dataclass(frozen=True)
class ModelPlan:
    name: str
    levels: tuple[Level, ...]


@dataclass(frozen=True)
class Plan:
    models: tuple[ModelPlan, ...]
    max_tokens: int
    quick: bool
    two_turn: bool
    output: Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny only, 1,4,16, few requests")
    parser.add_argument("--models", help="comma-separated built-in models (default tiny,small)")
    parser.add_argument("--concurrency", help="comma-separated client counts for every model")
    parser.add_argument(
        "--rounds", type=int, help="interleaved rounds per level (default 3, small 2, quick 2)"
    )
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--no-two-turn", action="store_true", help="skip the two-turn test")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    return parser.parse_args(argv)


def positive_ints(text: str) -> tuple[int, ...]:
    values = tuple(int(part) for part in text.split(",") if part.strip())
    if not values or min(values) < 1:
        raise SystemExit(f"--concurrency needs positive integers, got {text!r}")
    return values


def _request_count(model: str, concurrency: int, quick: bool) -> int:
    if quick:
        return max(concurrency, 4)
    if model == "tiny":
        return max(4 * concurrency, 16) if concurrency <= 16 else 2 * concurrency
    return max(concurrency, 4)


def _rounds(model: str, args: argparse.Namespace) -> int:
    if args.rounds is not None:
        if args.rounds < 1:
            raise SystemExit(f"--rounds needs a positive integer, got {args.rounds}")
        return int(args.rounds)
    return QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS.get(model, QUICK_ROUNDS)


def _concurrency(model: str, args: argparse.Namespace) -> tuple[int, ...]:
    if args.concurrency:
        return positive_ints(args.concurrency)
    return QUICK_CONCURRENCY if args.quick else DEFAULT_CONCURRENCY.get(model, QUICK_CONCURRENCY)


def _model_plan(name: str, args: argparse.Namespace) -> ModelPlan:
    rounds = _rounds(name, args)
    levels = tuple(
        Level(c, _request_count(name, c, args.quick), rounds) for c in _concurrency(name, args)
    )
    return ModelPlan(name, levels)


def build_plan(args: argparse.Namespace) -> Plan:
    default_models = "tiny" if args.quick else "tiny,small"
    names = [name.strip() for name in (args.models or default_models).split(",") if name.strip()]
    return Plan(
        models=tuple(_model_plan(name, args) for name in names),
        max_tokens=args.max_tokens,
        quick=args.quick,
        two_turn=not args.no_two_turn,
        output=args.output,
    )
