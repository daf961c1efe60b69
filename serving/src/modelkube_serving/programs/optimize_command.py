"""`modelkube optimize`: compile a declarative program against a served model, write it back.

Everything local (the program, the trainset, the output's folder) is checked before the first
call to the service. Exit 2: bad arguments or files; exit 1: the service or the optimizer
failed. Either way one line on stderr and no output file.
"""

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkube_serving.argtypes import non_negative, positive

if TYPE_CHECKING:  # DSPy and pydantic load only once the arguments are known to be good
    from modelkube_serving.programs.spec import ProgramSpec

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
MAX_DEMOS = 32  # a program holds at most 64; bootstrapped and labeled demos share this budget
PREFIX = "modelkube optimize"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("optimize", help="compile a DSPy program against a served model")
    p.add_argument("--service-url", required=True, help="the runtime, with or without /v1")
    p.add_argument("--program", required=True, type=Path, help="a program object or programs file")
    p.add_argument("--name", help="the program to compile, when --program holds several")
    p.add_argument("--trainset", required=True, type=Path, help="JSONL of inputs and outputs")
    p.add_argument("--metric", required=True, choices=["exact_match", "f1"])
    p.add_argument("--optimizer", required=True, choices=["bootstrap_fewshot", "miprov2"])
    p.add_argument("--model", help="the served model to use (default: the first it lists)")
    p.add_argument("--output", type=Path, help="where the program JSON goes (default: stdout)")
    p.add_argument("--max-demos", type=_demos, default=4, help=f"1 to {MAX_DEMOS}")
    p.add_argument("--seed", type=non_negative, default=0)
    p.add_argument("--max-tokens", type=positive, default=1024, help="per call to the model")
    p.add_argument("--threads", type=positive, default=4, help="calls to the model at once")
    p.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="info or debug: DSPy's own log lines too",
    )
    p.set_defaults(run=run)


class _Failure(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def run(args: argparse.Namespace) -> int:
    try:
        program = _optimize(args)
    except _Failure as exc:
        print(f"{PREFIX}: error: {exc}", file=sys.stderr)
        return exc.code
    if args.output is None:
        print(program)
        return 0
    try:
        _write_atomically(args.output, program)
    except OSError as exc:
        print(
            f"{PREFIX}: error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr
        )
        return EXIT_BAD_INPUT
    say(f"wrote {args.output}")
    return 0


def _optimize(args: argparse.Namespace) -> str:
    from modelkube_serving.programs.optimize import OptimizeError, Settings, optimize
    from modelkube_serving.programs.remote import ServiceArgumentError, ServiceError, remote_lm

    spec, rows = _local_inputs(args)
    try:
        base, model, key = _service(args)
        say(f"compiling {spec.name} against {model} at {base}")
        _dspy_logging(args.log_level)
        settings = Settings(args.optimizer, args.metric, args.max_demos, args.seed, args.threads)
        lm = remote_lm(base, model, key, args.max_tokens)
        compiled = optimize(spec, rows, lm, settings, say)
    except ServiceArgumentError as exc:
        raise _Failure(str(exc), EXIT_BAD_INPUT) from exc
    except (ServiceError, OptimizeError) as exc:
        raise _Failure(str(exc), EXIT_FAILED) from exc
    return compiled.model_dump_json(indent=2, exclude_none=True)


def _local_inputs(args: argparse.Namespace) -> tuple["ProgramSpec", list[dict[str, Any]]]:
    from modelkube_serving.programs.modules import build
    from modelkube_serving.programs.optimize import signature_fields
    from modelkube_serving.programs.spec import ProgramSpecError, parse_program
    from modelkube_serving.programs.trainset import TrainsetError, read_trainset

    try:
        spec = parse_program(_read(args.program), str(args.program), args.name)
        build(spec)  # a signature DSPy cannot parse fails here, not after the first call
        rows = read_trainset(args.trainset, *signature_fields(spec))
    except (ProgramSpecError, TrainsetError) as exc:
        raise _Failure(str(exc), EXIT_BAD_INPUT) from exc
    if args.output is not None and not args.output.parent.is_dir():
        raise _Failure(f"--output: no folder {args.output.parent}", EXIT_BAD_INPUT)
    return spec, rows


def _service(args: argparse.Namespace) -> tuple[str, str, str]:
    from modelkube_serving.programs.remote import api_base, api_key, choose_model, served_models

    base = api_base(args.service_url)
    key = api_key()
    return base, choose_model(served_models(base, key), args.model, base), key


def _read(path: Path) -> str:
    from modelkube_serving.programs.spec import ProgramSpecError

    try:
        return path.read_text()
    except OSError as exc:
        raise ProgramSpecError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _dspy_logging(level: str) -> None:
    if level in ("debug", "info"):
        logging.getLogger("dspy").setLevel(level.upper())
        return
    # Each example whose output does not parse is an ERROR line from DSPy's bootstrap, with the
    # model's whole answer: the scores say the same in one line.
    logging.getLogger("dspy").setLevel(logging.ERROR)
    logging.getLogger("dspy.teleprompt.bootstrap").setLevel(logging.CRITICAL)
    import litellm

    litellm.suppress_debug_info = True  # its "Give Feedback" banner on every failed call


def say(message: str) -> None:
    print(f"{PREFIX}: {message}", file=sys.stderr, flush=True)


def _write_atomically(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would hide the program from its readers
        with os.fdopen(fd, "w") as out:
            out.write(text + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _demos(text: str) -> int:
    value = positive(text)
    if value > MAX_DEMOS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_DEMOS}, got {value}")
    return value
