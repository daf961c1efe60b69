"""What one benchmark run measures: models, concurrency levels, request counts, rounds."""

import argparse
from dataclasses import dataclass
from pathlib import Path

from modelkube_serving.models.packaged import PACKAGED

REAL_MODEL = "smollm2-135m-instruct"
DEFAULT_MODELS = f"tiny,small,{REAL_MODEL}"
QUICK_MODELS = f"tiny,{REAL_MODEL}"
DEFAULT_CONCURRENCY: dict[str, tuple[int, ...]] = {"tiny": (1, 4, 16, 64), "small": (1, 4, 16)}
QUICK_CONCURRENCY = (1, 4, 16)
DEFAULT_ROUNDS: dict[str, int] = {"tiny": 3, "small": 2}
QUICK_ROUNDS = 2
DEFAULT_MAX_TOKENS, QUICK_MAX_TOKENS = 64, 32
DEFAULT_SETTLE_S = 2.0
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
    prefill_trials: int  # of the ~1,000-token prefill (two-turn chat), per system
    output: Path
    systems: tuple[str, ...] = ()  # HTTP systems to run; empty: every one the model has
    # Seconds of quiet before each system's round: the previous system's after-work (llama-server
    # saving its slot to its prompt cache, a thread pool still spinning) otherwise lands on the
    # first request of the next one's round (~150 ms against a 35 ms TTFT p50, measured).
    settle_s: float = DEFAULT_SETTLE_S


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_MODELS}, 1,4,16 clients, few requests, max_tokens {QUICK_MAX_TOKENS}",
    )
    parser.add_argument(
        "--models", help=f"comma-separated built-in models (default {DEFAULT_MODELS})"
    )
    parser.add_argument("--concurrency", help="comma-separated client counts for every model")
    parser.add_argument(
        "--rounds", type=int, help="interleaved rounds per level (default 3, small 2, quick 2)"
    )
    parser.add_argument(
        "--max-tokens", type=int, help=f"default {DEFAULT_MAX_TOKENS}, quick {QUICK_MAX_TOKENS}"
    )
    parser.add_argument("--no-two-turn", action="store_true", help="skip the two-turn test")
    parser.add_argument(
        "--systems",
        default="",
        help="comma-separated HTTP systems to run (ours, ours-keep, ours-llamacpp, mlx_lm.server, "
        "llama-server); default: all the model has",
    )
    parser.add_argument(
        "--settle-s",
        type=float,
        default=DEFAULT_SETTLE_S,
        help=f"quiet seconds before each system's round (default {DEFAULT_SETTLE_S}; 0: none)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    return parser.parse_args(argv)


def positive_ints(text: str) -> tuple[int, ...]:
    values = tuple(int(part) for part in text.split(",") if part.strip())
    if not values or min(values) < 1:
        raise SystemExit(f"--concurrency needs positive integers, got {text!r}")
    return values


def is_real(model: str) -> bool:
    """A real model from a GGUF file, served also by llama-server (no ceiling worker)."""
    return model in PACKAGED


def _request_count(model: str, concurrency: int, quick: bool) -> int:
    if is_real(model):  # ~10 tok/s per request on two cores: keep the rounds short
        return max(concurrency, 2) if quick else max(2 * concurrency, 8)
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
    default_models = QUICK_MODELS if args.quick else DEFAULT_MODELS
    names = [name.strip() for name in (args.models or default_models).split(",") if name.strip()]
    max_tokens = args.max_tokens or (QUICK_MAX_TOKENS if args.quick else DEFAULT_MAX_TOKENS)
    return Plan(
        models=tuple(_model_plan(name, args) for name in names),
        max_tokens=max_tokens,
        quick=args.quick,
        two_turn=not args.no_two_turn,
        prefill_trials=2 if args.quick else 3,
        systems=tuple(name.strip() for name in args.systems.split(",") if name.strip()),
        output=args.output,
        settle_s=max(0.0, args.settle_s),
    )
