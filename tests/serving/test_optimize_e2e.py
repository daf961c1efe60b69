"""`modelkube optimize` against a real runtime on builtin://tiny, through the OpenAI API.

The tiny model has random weights: its answers parse (the JSON adapter sends the signature's
schema and the runtime constrains decoding to it) but are never right, so no bootstrapped demo
can pass the metric, and the program that comes out carries labeled demos from the trainset.
"""

import json
from pathlib import Path

import pytest

from modelkube_serving.programs.spec import parse_programs
from tests.serving.conftest import API_KEY, MODEL
from tests.serving.inprocess import InProcessRuntime
from tests.serving.test_cli import run_cli

PROGRAM = {"name": "qa", "signature": "question -> answer", "instructions": "One word."}
ROWS = [
    {"question": "What serves the model?", "answer": "runtime"},
    {"question": "What reconciles ModelServices?", "answer": "operator"},
    {"question": "What trains adapters?", "answer": "finetune"},
    {"question": "What installs everything?", "answer": "helm"},
]


def optimize(
    runtime: InProcessRuntime, tmp_path: Path, *extra: str, key: str = API_KEY
) -> tuple[int, list[str], str]:
    (tmp_path / "program.json").write_text(json.dumps({"programs": [PROGRAM]}))
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    result = run_cli(
        "optimize",
        "--service-url",
        f"{runtime.url}/v1/",
        "--program",
        str(tmp_path / "program.json"),
        "--trainset",
        str(tmp_path / "train.jsonl"),
        "--metric",
        "exact_match",
        "--optimizer",
        "bootstrap_fewshot",
        "--max-tokens",
        "16",
        *extra,
        env={"MODELKUBE_API_KEY": key, "OPENAI_API_KEY": ""},
    )
    return result.returncode, result.stderr.strip().splitlines(), result.stdout


@pytest.mark.slow  # four examples, each called before, while and after compiling, on MLX's CPU
def test_bootstrap_fewshot_on_wrong_answers_writes_labeled_demos(
    auth_runtime: InProcessRuntime, tmp_path: Path
) -> None:
    output = tmp_path / "optimized.json"
    code, err, out = optimize(auth_runtime, tmp_path, "--max-demos", "2", "--output", str(output))
    assert code == 0, err
    assert out == ""
    assert f"modelkube optimize: compiling qa against {MODEL} at {auth_runtime.url}/v1" in err
    assert "modelkube optimize: score before: 0.000 (0 unparsable, 0 failed calls)" in err
    assert "modelkube optimize: 2 demos: 0 bootstrapped (passing answers), 2 labeled" in err
    written = json.loads(output.read_text())
    [program] = parse_programs(json.dumps({"programs": [written]}), str(output))
    assert (program.name, program.signature, program.instructions) == (
        "qa",
        "question -> answer",
        "One word.",
    )
    assert len(program.demos) == 2 and all(demo in ROWS for demo in program.demos)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "optimized.json",
        "program.json",
        "train.jsonl",
    ]


def test_a_model_the_service_does_not_serve_exits_2(
    auth_runtime: InProcessRuntime, tmp_path: Path
) -> None:
    code, err, _ = optimize(auth_runtime, tmp_path, "--model", "gpt-4")
    assert code == 2
    assert err == [
        f"modelkube optimize: error: --model gpt-4 is not served by {auth_runtime.url}/v1; "
        f"it serves ['{MODEL}']"
    ]


def test_a_refused_api_key_exits_1_with_one_line(
    auth_runtime: InProcessRuntime, tmp_path: Path
) -> None:
    code, err, _ = optimize(auth_runtime, tmp_path, key="")
    assert code == 1
    assert err == [
        f"modelkube optimize: error: {auth_runtime.url}/v1 refused the API key (401): "
        "set MODELKUBE_API_KEY or OPENAI_API_KEY"
    ]
