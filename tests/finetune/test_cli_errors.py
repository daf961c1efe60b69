"""Bad arguments and bad data stop `modelkube finetune` before training, with one line."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.finetune.conftest import CHAT, Outcome


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "qlora"], "argument --method: invalid choice: 'qlora'"),
        (["--iterations", "0"], "argument --iterations: must be at least 1, got 0"),
        (["--learning-rate", "fast"], "argument --learning-rate: not a number: 'fast'"),
        (["--learning-rate=-1e-4"], "argument --learning-rate: must be above 0"),
        (["--batch-size", "2.5"], "argument --batch-size: not a whole number: '2.5'"),
        (["--num-layers", "0"], "argument --num-layers: must be at least 1, or -1 for all"),
    ],
)
def test_bad_arguments_fail_with_one_line(
    args: list[str], message: str, tmp_path: Path, finetune_here: Callable[..., Outcome]
) -> None:
    base = ["--base", "builtin://tiny", "--data", str(CHAT), "--output", str(tmp_path / "o")]
    result = finetune_here(*base, *args)
    assert result.returncode == 2
    assert message in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("data", "extra", "message"),
    [
        ("missing.jsonl", [], "cannot read"),
        ("bad.jsonl", [], "bad.jsonl line 2: not valid JSON"),
        ("mixed.jsonl", [], "mixed.jsonl line 2: a text example in a chat dataset"),
        ("one.jsonl", [], "at least 2 are needed to hold one out for validation"),
        ("chat", ["--batch-size", "64"], "--batch-size 64 needs at least 64"),
        ("chat", ["--num-layers", "9"], "--num-layers 9 is more than the model's 4 layers"),
        ("chat", ["--base", "builtin://huge"], "unknown built-in model builtin://huge"),
    ],
)
def test_bad_data_fails_before_training_with_one_line(
    data: str,
    extra: list[str],
    message: str,
    tmp_path: Path,
    finetune_here: Callable[..., Outcome],
) -> None:
    chat = CHAT.read_text().splitlines()
    files = {
        "bad.jsonl": write(tmp_path / "bad.jsonl", f"{chat[0]}\n{{oops\n"),
        "mixed.jsonl": write(tmp_path / "mixed.jsonl", f"{chat[0]}\n{json.dumps({'text': 'x'})}\n"),
        "one.jsonl": write(tmp_path / "one.jsonl", f"{chat[0]}\n"),
        "chat": CHAT,
    }
    path = files.get(data, tmp_path / data)
    output = tmp_path / "out"
    args = ["--base", "builtin://tiny", "--data", str(path), "--output", str(output), *extra]
    result = finetune_here(*args)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("modelkube finetune: error: ")
    assert message in last
    assert "Traceback" not in result.stderr
    assert not output.exists(), "a run that never started left files behind"
