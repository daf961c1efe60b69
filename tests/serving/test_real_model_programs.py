"""Declarative DSPy programs on a real model, builtin://smollm2-135m-instruct: served at
/v1/programs with parsed outputs, and compiled by `modelkube optimize`.

One `modelkube serve` process for the module: in the test process MLX would run on its
reference BLAS, and a real model's programs are matmul-bound (OpenBLAS is preloaded only
into a process of its own). Programs call the model greedily, so the answers are
reproducible. A 135M model follows
DSPy's field format once it sees demos of it, so the served programs carry two each.
"""

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving.runtime_process import RuntimeProcess

pytestmark = pytest.mark.real_model

MODEL = "smollm2-135m-instruct"
SENTIMENT_DEMOS = [
    {"text": "I love this phone.", "sentiment": "positive"},
    {"text": "The battery died after an hour.", "sentiment": "negative"},
]
PROGRAMS = {
    "programs": [
        {
            "name": "sentiment",
            "signature": "text -> sentiment",
            "module": "predict",
            "instructions": "Classify the sentiment of the text as positive or negative.",
            "demos": SENTIMENT_DEMOS,
        },
        {
            "name": "capital",
            "signature": "country -> capital",
            "module": "chain_of_thought",
            "instructions": "Name the capital city of the country.",
            "demos": [
                {
                    "country": "Italy",
                    "reasoning": "The capital of Italy is Rome.",
                    "capital": "Rome",
                },
                {
                    "country": "Germany",
                    "reasoning": "The capital of Germany is Berlin.",
                    "capital": "Berlin",
                },
            ],
        },
    ]
}
# What `modelkube optimize` compiles: the same task, with no demos to start from.
BARE_SENTIMENT = {
    "name": "sentiment",
    "signature": "text -> sentiment",
    "instructions": "Classify the sentiment of the text as positive or negative.",
}
TRAINSET = [
    *SENTIMENT_DEMOS,
    {"text": "What a wonderful day at the beach.", "sentiment": "positive"},
    {"text": "The service was slow and the food was cold.", "sentiment": "negative"},
]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    directory = tmp_path_factory.mktemp("real-programs")
    programs = directory / "programs.json"
    programs.write_text(json.dumps(PROGRAMS))
    args = ["--model", f"builtin://{MODEL}", "--programs-file", str(programs)]
    runtime = RuntimeProcess(args, directory / "runtime.log")
    # A cold cache converts the GGUF file first (`make models` does it ahead).
    runtime.start(timeout=300)
    yield runtime
    runtime.stop()


def run_program(runtime: RuntimeProcess, name: str, inputs: dict[str, str]) -> dict[str, str]:
    response = httpx.post(f"{runtime.url}/v1/programs/{name}", json={"inputs": inputs}, timeout=300)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "program.result" and body["usage"]["completion_tokens"] > 0
    outputs: dict[str, str] = body["outputs"]
    return outputs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("This movie was wonderful.", "positive"),
        ("The food was cold and awful.", "negative"),
    ],
)
def test_predict_returns_the_parsed_field(
    runtime: RuntimeProcess, text: str, expected: str
) -> None:
    outputs = run_program(runtime, "sentiment", {"text": text})
    assert list(outputs) == ["sentiment"]
    assert outputs["sentiment"].strip().lower() == expected


def test_chain_of_thought_returns_reasoning_and_answer(runtime: RuntimeProcess) -> None:
    outputs = run_program(runtime, "capital", {"country": "France"})
    assert sorted(outputs) == ["capital", "reasoning"]
    assert outputs["reasoning"].strip()
    assert "Paris" in outputs["capital"]


@pytest.mark.slow  # about 12 program calls: a minute on an idle 2-core machine
@pytest.mark.timeout(600)  # ~220 s measured at load average 10 on two cores
def test_optimize_bootstrap_fewshot_finishes_with_scores(
    runtime: RuntimeProcess, tmp_path: Path
) -> None:
    (tmp_path / "program.json").write_text(json.dumps({"programs": [BARE_SENTIMENT]}))
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TRAINSET))
    output = tmp_path / "optimized.json"
    command = [
        sys.executable, "-m", "modelkube_serving", "optimize",
        "--service-url", f"{runtime.url}/v1/", "--program", str(tmp_path / "program.json"),
        "--trainset", str(tmp_path / "train.jsonl"), "--metric", "exact_match",
        "--optimizer", "bootstrap_fewshot", "--max-demos", "2", "--max-tokens", "48",
        "--output", str(output),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    print(done.stderr)  # the scores before and after, shown with `pytest -s`
    assert done.returncode == 0, done.stderr
    scores = dict(re.findall(r"score (before|after): ([0-9.]+)", done.stderr))
    assert set(scores) == {"before", "after"}, done.stderr
    # With the JSON adapter's schema every answer parses and the bare program already scores
    # 1.0 on this trainset (measured); the 135M model does worse with two demos in its prompt
    # (0.5 measured), so only what any run must show is asserted: nothing unparsable.
    assert "(0 unparsable, 0 failed calls)" in done.stderr
    assert float(scores["before"]) >= 0.5
    written = json.loads(output.read_text())
    assert written["name"] == "sentiment" and len(written["demos"]) == 2
