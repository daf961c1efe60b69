"""Compiling a declarative program with stock DSPy optimizers, on DSPy's own scripted LM (which
answers in the format of the JSON adapter that optimize runs with)."""

import inspect
import json
from typing import Any

import dspy
import pytest
from dspy.utils.dummies import DummyLM

from modelkube_serving.programs.metrics import dspy_metric
from modelkube_serving.programs.optimize import (
    MAX_ERRORS,
    OptimizeError,
    Settings,
    make_optimizer,
    optimize,
)
from modelkube_serving.programs.remote import remote_lm
from modelkube_serving.programs.spec import ProgramSpec, parse_programs
from modelkube_serving.programs.structured import adapter

ROWS = [{"question": f"q{i}?", "answer": f"a{i}"} for i in range(6)]
QA = ProgramSpec(name="qa", signature="question -> answer")


def scripted(odd_right: bool = True, **extra: str) -> DummyLM:
    """Answers each question (right for odd numbers); MIPROv2's proposer gets fixed texts."""
    proposer = {
        "fields: `summary`": {"summary": "Short questions, one-word answers."},
        "fields: `proposed_instruction`": {"proposed_instruction": "Answer in one word."},
        "fields: `observations`": {"observations": "Short questions."},
    }
    answers = {
        f"q{i}?": {**extra, "answer": f"a{i}" if odd_right and i % 2 else "wrong"} for i in range(6)
    }
    return DummyLM({**proposer, **answers}, adapter=adapter())


def run(spec: ProgramSpec, lm: Any, settings: Settings) -> tuple[ProgramSpec, list[str]]:
    said: list[str] = []
    return optimize(spec, ROWS, lm, settings, said.append), said


def test_bootstrap_writes_passing_answers_and_labeled_demos_as_plain_fields() -> None:
    compiled, said = run(QA, scripted(), Settings("bootstrap_fewshot", "exact_match", 3))
    assert [set(d) for d in compiled.demos] == [{"question", "answer"}] * 3  # no "augmented"
    for demo in compiled.demos:
        assert demo in ROWS  # odd questions pass the metric; labeled ones come from the trainset
    assert compiled.instructions is None  # DSPy's default text is not written out
    parse_programs(json.dumps({"programs": [compiled.model_dump()]}), "out")
    assert said[1] == "score before: 0.500 (0 unparsable, 0 failed calls)"
    assert "3 demos: 3 bootstrapped (passing answers), 0 labeled" in said


def test_chain_of_thought_demos_keep_their_reasoning_and_the_instructions() -> None:
    spec = ProgramSpec(
        name="qa", signature="question -> answer", module="chain_of_thought", instructions="Brief."
    )
    compiled, _ = run(spec, scripted(reasoning="because"), Settings("bootstrap_fewshot", "f1", 2))
    assert compiled.instructions == "Brief."
    assert compiled.module == "chain_of_thought"
    assert [list(d) for d in compiled.demos] == [["question", "reasoning", "answer"]] * 2


def test_output_that_never_parses_still_gives_labeled_demos() -> None:
    lm = DummyLM(
        {f"q{i}?": {"nonsense": "x"} for i in range(6)}, adapter=adapter()
    )  # no `answer` field: unparsable
    compiled, said = run(QA, lm, Settings("bootstrap_fewshot", "exact_match", 4, seed=1))
    assert len(compiled.demos) == 4
    assert all(demo in ROWS for demo in compiled.demos)
    assert "score before: 0.000 (6 unparsable, 0 failed calls)" in said
    assert "4 demos: 0 bootstrapped (passing answers), 4 labeled" in said


def test_the_seed_chooses_which_examples_become_labeled_demos() -> None:
    lm = DummyLM({f"q{i}?": {"nonsense": "x"} for i in range(6)}, adapter=adapter())
    chosen = {
        seed: run(QA, lm, Settings("bootstrap_fewshot", "f1", 2, seed=seed))[0].demos
        for seed in range(4)
    }
    assert chosen[0] == run(QA, lm, Settings("bootstrap_fewshot", "f1", 2, seed=0))[0].demos
    assert len({json.dumps(demos) for demos in chosen.values()}) > 1


def test_a_model_that_fails_every_call_stops_before_optimizing() -> None:
    lm = remote_lm("http://127.0.0.1:1/v1", "tiny", "unused", max_tokens=16, retries=0)
    with pytest.raises(OptimizeError, match=r"every call to the model failed: .*Connection"):
        run(QA, lm, Settings("bootstrap_fewshot", "exact_match", 2, threads=2))


def test_miprov2_is_set_small_for_a_local_model() -> None:
    lm = scripted()
    metric = dspy_metric("exact_match", ["answer"])
    settings = Settings("miprov2", "exact_match", max_demos=3, seed=7, threads=2)
    optimizer, extra = make_optimizer(settings, metric, lm, examples=10)
    assert isinstance(optimizer, dspy.MIPROv2)
    assert optimizer.auto is None and optimizer.num_candidates == 3
    assert (optimizer.max_bootstrapped_demos, optimizer.max_labeled_demos) == (3, 3)
    assert (optimizer.seed, optimizer.num_threads, optimizer.max_errors) == (7, 2, MAX_ERRORS)
    assert optimizer.prompt_model is lm and optimizer.task_model is lm
    assert extra == {
        "num_trials": 6,
        "minibatch": False,
        "minibatch_size": 8,
        "program_aware_proposer": False,
    }
    # Every keyword is one the installed DSPy's compile() takes.
    inspect.signature(optimizer.compile).bind(QA, trainset=[], **extra)


def test_bootstrap_fewshot_never_stops_on_examples_that_fail() -> None:
    metric = dspy_metric("f1", ["answer"])
    optimizer, extra = make_optimizer(Settings("bootstrap_fewshot", "f1", 5), metric, None, 6)
    assert isinstance(optimizer, dspy.BootstrapFewShot) and extra == {}
    assert (optimizer.max_bootstrapped_demos, optimizer.max_labeled_demos) == (5, 5)
    assert optimizer.max_errors == MAX_ERRORS


def test_miprov2_compiles_to_a_declarative_program() -> None:
    compiled, said = run(QA, scripted(), Settings("miprov2", "exact_match", 2))
    assert compiled.instructions in (None, "Answer in one word.")
    assert all(set(demo) == {"question", "answer"} for demo in compiled.demos)
    assert said[-1].startswith("score after: ")
