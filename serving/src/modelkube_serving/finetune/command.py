"""`modelkube finetune`: its flags, and a run that exits with one line on bad input."""

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from modelkube_serving.argtypes import non_negative, positive, positive_float, whole
from modelkube_serving.finetune.config import METHODS, TrainConfig
from modelkube_serving.finetune.progress import Bar, LogLines, ProgressSink, Tracker

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 143  # what a shell reports for SIGTERM; the Job's retry resumes the run
TERMINATION_LOG = Path("/dev/termination-log")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("finetune", help="fine-tune a model (LoRA, DoRA or full) with mlx-lm")
    p.add_argument("--base", required=True, help="builtin://tiny, hf://org/name, pvc:// or a path")
    p.add_argument("--data", required=True, type=Path, help="train JSONL, or a dir of train.jsonl")
    p.add_argument("--validation-data", type=Path, help="default: hold out 10%% of --data")
    p.add_argument("--method", choices=METHODS, default="lora")
    p.add_argument("--output", required=True, help="adapter directory (pvc://claim/path in a pod)")
    p.add_argument("--iterations", type=positive, default=100)
    p.add_argument("--learning-rate", type=positive_float, default=1e-5)
    p.add_argument("--batch-size", type=positive, default=4)
    p.add_argument(
        "--num-layers", type=_layers, help="layers to adapt (default: last 16 or all); -1: all"
    )
    p.add_argument("--rank", type=positive, default=8, help="LoRA/DoRA rank")
    p.add_argument("--seed", type=non_negative, default=0)
    p.add_argument("--max-seq-length", type=positive, default=2048)
    p.add_argument("--mask-prompt", action="store_true", help="train on completions only")
    p.add_argument("--steps-per-report", type=positive, default=10)
    p.add_argument("--steps-per-eval", type=positive, default=100)
    p.add_argument("--val-batches", type=_layers, default=25, help="-1: the whole set")
    p.add_argument("--save-every", type=positive, default=100, help="checkpoint interval")
    p.add_argument(
        "--report-to-finetunejob",
        metavar="NAME",
        default=os.environ.get("MODELKUBE_FINETUNEJOB"),
        help="in a pod: write progress to this FineTuneJob's status",
    )
    p.add_argument("--progress", choices=["auto", "bar", "lines", "none"], default="auto")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Heavy imports (MLX) only once the arguments are known to be good.
    from modelkube_operator.k8s.credentials import CredentialsError, in_cluster

    from modelkube_serving.finetune.dataset import DatasetError
    from modelkube_serving.finetune.status_report import StatusReporter
    from modelkube_serving.finetune.trainer import Interrupted, TrainingError, finetune
    from modelkube_serving.models.uri import ModelSourceError

    config = _config(args)
    stop = threading.Event()
    _stop_on_sigterm(stop)
    try:
        cluster = in_cluster() if args.report_to_finetunejob else None
    except CredentialsError as exc:
        return _fail(f"cannot report to FineTuneJob {args.report_to_finetunejob}: {exc}")

    def tracker_for(start: int, resuming: bool) -> Tracker:
        sinks: list[ProgressSink] = _console(args.progress, config.iterations, start)
        if cluster is not None:
            sinks.append(StatusReporter(cluster, args.report_to_finetunejob))
        if resuming:
            print(f"modelkube finetune: resuming at iteration {start}", file=sys.stderr)
        return Tracker(config.iterations, start, sinks)

    try:
        result = finetune(config, tracker_for, stop)
    except (DatasetError, TrainingError, ModelSourceError) as exc:
        return _fail(str(exc))
    except Interrupted as exc:
        print(f"modelkube finetune: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.already_done:
        print(f"modelkube finetune: {config.output} already holds this run's adapter")
    losses = result.manifest.get("finalLosses", {})
    summary = ", ".join(f"{k} loss {v:.3f}" for k, v in sorted(losses.items()))
    print(f"modelkube finetune: adapter written to {config.output} ({summary})")
    return 0


def _config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        base=args.base,
        data=args.data,
        validation_data=args.validation_data,
        method=args.method,
        output=_output_path(args.output),
        iterations=args.iterations,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        num_layers=args.num_layers,
        rank=args.rank,
        seed=args.seed,
        max_seq_length=args.max_seq_length,
        mask_prompt=args.mask_prompt,
        steps_per_report=args.steps_per_report,
        steps_per_eval=args.steps_per_eval,
        val_batches=args.val_batches,
        save_every=args.save_every,
    )


def _output_path(text: str) -> Path:
    if text.startswith("pvc://"):
        from modelkube_serving.models.uri import PVC_MOUNT_ROOT

        return PVC_MOUNT_ROOT / text.removeprefix("pvc://")
    return Path(text).expanduser()


def _console(mode: str, total: int, start: int) -> list[ProgressSink]:
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "lines"
    if mode == "bar":
        return [Bar(total, start)]
    return [LogLines()] if mode == "lines" else []


def _stop_on_sigterm(stop: threading.Event) -> None:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)


def _fail(message: str) -> int:
    print(f"modelkube finetune: error: {message}", file=sys.stderr)
    if TERMINATION_LOG.parent.is_dir() and os.access(TERMINATION_LOG, os.W_OK):
        # Kubernetes shows it in the pod's status, where the operator can read it.
        TERMINATION_LOG.write_text(message)
    return EXIT_BAD_INPUT


def _layers(text: str) -> int:
    value = whole(text)
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"must be at least 1, or -1 for all, got {value}")
    return value
