"""`modelkube optimize` on bad input: exit 2 (or 1 for the service), one line, no output file."""

import json
from pathlib import Path

import pytest

from modelkube_serving.cli import main
from tests.serving.test_cli import run_cli

PROGRAM = {"name": "qa", "signature": "question -> answer", "instructions": "One word."}
ROWS = [{"question": "What serves?", "answer": "runtime"}, {"question": "Who?", "answer": "kopf"}]
UNREACHABLE = "http://127.0.0.1:1"  # nothing listens on port 1: refused at once


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "program.json").write_text(json.dumps(PROGRAM))
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS))
    return {"program": tmp_path / "program.json", "trainset": tmp_path / "train.jsonl"}


def flags(files: dict[str, Path], **override: str) -> list[str]:
    values = {
        "service-url": UNREACHABLE,
        "program": str(files["program"]),
        "trainset": str(files["trainset"]),
        "metric": "exact_match",
        "optimizer": "bootstrap_fewshot",
        **{k.replace("_", "-"): v for k, v in override.items()},
    }
    return ["optimize", *[part for k, v in values.items() for part in (f"--{k}", v)]]


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"program": "{bad"}, "program.json: not valid JSON"),
        ({"program": json.dumps({"name": "Bad Name", "signature": "q -> a"})}, "name: String"),
        ({"program": json.dumps({"name": "qa", "signature": "q, a"})}, "bad signature"),
        ({"program": json.dumps({"programs": [PROGRAM, {**PROGRAM, "name": "b"}]})}, "choose one"),
        ({"trainset": '{"question": "q", "answer": "a"}\n{nope'}, "train.jsonl line 2: not valid"),
        ({"trainset": '{"question": "q"}\n{"question": "r"}'}, "line 1: missing field(s) answer"),
        ({"trainset": '{"question": "q", "answer": "a"}'}, "needs at least 2 examples, found 1"),
        ({"service_url": "runtime:8000"}, "--service-url must be an http:// or https:// URL"),
        ({"output": "/no/such/dir/out.json"}, "--output: no folder /no/such/dir"),
    ],
)
def test_bad_files_and_arguments_exit_2_with_one_line_before_any_call(
    files: dict[str, Path],
    override: dict[str, str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key in ("program", "trainset"):
        if key in override:
            override[key] = write(files[key], override[key])
    assert main(flags(files, **override)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("modelkube optimize: error: ")
    assert message in err[0]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"metric": "bleu"}, "argument --metric: invalid choice: 'bleu'"),
        ({"optimizer": "copro"}, "argument --optimizer: invalid choice: 'copro'"),
        ({"max_demos": "0"}, "argument --max-demos: must be at least 1, got 0"),
        ({"max_demos": "33"}, "argument --max-demos: must be at most 32, got 33"),
        ({"seed": "-1"}, "argument --seed: must be 0 or more"),
    ],
)
def test_bad_choices_are_refused_by_argparse(
    files: dict[str, Path],
    override: dict[str, str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(flags(files, **override))
    assert exited.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_an_unreachable_service_exits_1_with_one_line_and_no_output(
    files: dict[str, Path], tmp_path: Path
) -> None:
    output = tmp_path / "out.json"
    result = run_cli(*flags(files, output=str(output)))
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("modelkube optimize: error: cannot reach http://127.0.0.1:1/v1: ")
    assert "Connection refused" in line
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["program.json", "train.jsonl"]
