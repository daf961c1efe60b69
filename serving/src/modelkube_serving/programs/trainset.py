"""The examples `modelkube optimize` learns from: JSONL, checked line by line before any call."""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MIN_EXAMPLES = 2


class TrainsetError(ValueError):
    """The trainset is unusable; str() is one line that names the file and the line."""


def read_trainset(
    path: Path, inputs: Sequence[str], outputs: Sequence[str]
) -> list[dict[str, Any]]:
    """Each line an object with every input and output field; other keys are dropped."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise TrainsetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    fields = [*inputs, *outputs]
    examples = [
        _example(line, f"{path} line {number}", fields)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    if len(examples) < MIN_EXAMPLES:
        raise TrainsetError(
            f"{path}: needs at least {MIN_EXAMPLES} examples, found {len(examples)}"
        )
    return examples


def _example(line: str, where: str, fields: Sequence[str]) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TrainsetError(f"{where}: not valid JSON: {exc.msg} (column {exc.colno})") from exc
    if not isinstance(row, dict):
        raise TrainsetError(f"{where}: not a JSON object with the fields {list(fields)}")
    missing = [field for field in fields if field not in row]
    if missing:
        raise TrainsetError(f"{where}: missing field(s) {', '.join(missing)}")
    return {field: row[field] for field in fields}
