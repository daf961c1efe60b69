"""Compiling a declarative program with a DSPy optimizer, and writing back what it learned.

The program is built the way the runtime builds it, compiled by stock DSPy against any LM, and
turned back into the declarative form: the compiled predictor's instructions, and its demos as
plain dicts of the signature's fields. Nothing pickled, nothing of DSPy's internals.
"""

import json
import random
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from dataclasses import dataclass
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from modelkube_serving.programs.metrics import dspy_metric
from modelkube_serving.programs.modules import build
from modelkube_serving.programs.spec import ProgramSpec
from modelkube_serving.programs.structured import adapter

OPTIMIZERS = ("bootstrap_fewshot", "miprov2")
# Per-example failures (output that does not parse) are part of optimizing a small model, not a
# reason to stop: a service that fails every call is caught by the scoring around the optimizer.
MAX_ERRORS = 1_000_000
# MIPROv2 kept small for a local model: 3 instruction and demo-set candidates, 6 trials (DSPy's
# own formula for one predictor: max(2 * 2 * log2(3), 1.5 * 3)), minibatches past 35 examples.
MIPRO_CANDIDATES = 3
MIPRO_TRIALS = 6
MIPRO_MINIBATCH = 35

Progress = Callable[[str], None]


class OptimizeError(Exception):
    """Optimizing failed (the model or the optimizer); str() is one line."""


@dataclass(frozen=True)
class Settings:
    optimizer: str
    metric: str
    max_demos: int = 4
    seed: int = 0
    threads: int = 4


@dataclass(frozen=True)
class Evaluation:
    score: float
    total: int
    unparsable: int = 0
    failed: int = 0
    first_failure: str | None = None

    def __str__(self) -> str:
        return f"{self.score:.3f} ({self.unparsable} unparsable, {self.failed} failed calls)"


def signature_fields(spec: ProgramSpec) -> tuple[list[str], list[str]]:
    """The inputs and outputs a trainset line needs (a chain of thought's reasoning is not one)."""
    signature = dspy.Signature(spec.signature)
    return list(signature.input_fields), list(signature.output_fields)


def optimize(
    spec: ProgramSpec, rows: Sequence[dict[str, Any]], lm: Any, settings: Settings, say: Progress
) -> ProgramSpec:
    inputs, outputs = signature_fields(spec)
    trainset = [dspy.Example(**row).with_inputs(*inputs) for row in rows]
    random.Random(settings.seed).shuffle(trainset)  # which examples become demos
    metric = dspy_metric(settings.metric, outputs)
    student = build(spec).module
    # DSPy prints progress to stdout, which may be where the program goes.
    with dspy.context(lm=lm, adapter=adapter()), redirect_stdout(sys.stderr):
        say(f"step 1/3: scoring {spec.name} on {len(trainset)} examples ({settings.metric})")
        before = _checked(evaluate(student, trainset, metric, lm, settings.threads))
        say(f"score before: {before}")
        say(f"step 2/3: {settings.optimizer}, up to {settings.max_demos} demos")
        compiled = _compile(student, trainset, metric, lm, settings)
        say(_demo_summary(compiled))
        say("step 3/3: scoring the optimized program (its demos come from these examples)")
        after = _checked(evaluate(compiled, trainset, metric, lm, settings.threads))
        say(f"score after: {after}")
    return export(spec, compiled)


def evaluate(
    program: Any, examples: Sequence[Any], metric: Any, lm: Any, threads: int
) -> Evaluation:
    def one(example: Any) -> tuple[float, str | None]:
        try:
            with dspy.context(lm=lm, adapter=adapter()):  # DSPy's context is per thread
                return float(metric(example, program(**example.inputs()))), None
        except AdapterParseError:
            return 0.0, "unparsable"
        except Exception as exc:  # the call failed: counted, and reported if none succeeded
            return 0.0, f"{type(exc).__name__}: {_first_line(exc)}"

    with ThreadPoolExecutor(max(1, threads)) as pool:
        results = list(pool.map(one, examples))
    failures = [why for _, why in results if why not in (None, "unparsable")]
    return Evaluation(
        score=sum(score for score, _ in results) / max(1, len(results)),
        total=len(results),
        unparsable=sum(why == "unparsable" for _, why in results),
        failed=len(failures),
        first_failure=failures[0] if failures else None,
    )


def export(spec: ProgramSpec, compiled: Any) -> ProgramSpec:
    predictor = compiled.predictors()[0]
    fields = list(predictor.signature.fields)
    instructions = predictor.signature.instructions
    if instructions == build(spec).module.predictors()[0].signature.instructions:
        instructions = spec.instructions  # unchanged: DSPy's default text stays implicit
    demos = tuple(
        {field: _plain(demo[field]) for field in fields if field in demo}
        for demo in predictor.demos
    )
    return ProgramSpec(
        name=spec.name,
        signature=spec.signature,
        module=spec.module,
        instructions=instructions,
        demos=demos,
    )


def make_optimizer(
    settings: Settings, metric: Any, lm: Any, examples: int
) -> tuple[Any, dict[str, Any]]:
    """The DSPy optimizer, and the keyword arguments its compile() takes besides the trainset."""
    n = settings.max_demos
    if settings.optimizer == "bootstrap_fewshot":
        optimizer = dspy.BootstrapFewShot(
            metric=metric, max_bootstrapped_demos=n, max_labeled_demos=n, max_errors=MAX_ERRORS
        )
        return optimizer, {}
    optimizer = dspy.MIPROv2(
        metric=metric,
        prompt_model=lm,
        task_model=lm,
        auto=None,
        num_candidates=MIPRO_CANDIDATES,
        max_bootstrapped_demos=n,
        max_labeled_demos=n,
        num_threads=settings.threads,
        max_errors=MAX_ERRORS,
        seed=settings.seed,
        track_stats=False,
    )
    valset = max(1, int(examples * 0.8))  # MIPROv2 validates on the last 80% of the trainset
    return optimizer, {
        "num_trials": MIPRO_TRIALS,
        "minibatch": valset > MIPRO_MINIBATCH,
        "minibatch_size": min(MIPRO_MINIBATCH, valset),
        # A declarative program's code is DSPy's own Predict: describing it tells the model nothing.
        "program_aware_proposer": False,
    }


def _compile(student: Any, trainset: list[Any], metric: Any, lm: Any, settings: Settings) -> Any:
    optimizer, extra = make_optimizer(settings, metric, lm, len(trainset))
    try:
        return optimizer.compile(student, trainset=trainset, **extra)
    except AdapterParseError as exc:
        raise OptimizeError(
            f"{settings.optimizer}: the model's output does not fit DSPy's fields "
            f"{list(exc.signature.output_fields)}; a stronger model may be needed"
        ) from exc
    except Exception as exc:  # DSPy's and LiteLLM's errors, whatever their class: one line
        raise OptimizeError(
            f"{settings.optimizer}: {type(exc).__name__}: {_first_line(exc)}"
        ) from exc


def _demo_summary(compiled: Any) -> str:
    demos = compiled.predictors()[0].demos
    own = sum(bool(demo.get("augmented")) for demo in demos)
    return f"{len(demos)} demos: {own} bootstrapped (passing answers), {len(demos) - own} labeled"


def _checked(evaluation: Evaluation) -> Evaluation:
    if evaluation.total and evaluation.failed == evaluation.total:
        raise OptimizeError(f"every call to the model failed: {evaluation.first_failure}")
    return evaluation


def _plain(value: Any) -> Any:
    """A JSON value: typed fields' values (pydantic models, ...) become what JSON can hold."""

    def fallback(item: Any) -> Any:
        dump = getattr(item, "model_dump", None)
        return dump(mode="json") if callable(dump) else str(item)

    return json.loads(json.dumps(value, default=fallback))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
