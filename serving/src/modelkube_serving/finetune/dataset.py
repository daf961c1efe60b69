"""Training data: chat, completions or text JSONL, checked line by line before training.

The formats are mlx-lm's (and OpenAI's): `{"messages": [{role, content}, ...]}`,
`{"prompt": ..., "completion": ...}` and `{"text": ...}`. Every problem names its line, so a
bad dataset fails in seconds instead of minutes into a run.
"""

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Format = Literal["chat", "completions", "text"]
ROLES = ("system", "user", "assistant", "tool")
VALIDATION_FRACTION = 0.1


class DatasetError(ValueError):
    """The data cannot be trained on; str() is one line naming the file and line."""


@dataclass(frozen=True)
class Dataset:
    format: Format
    records: tuple[dict[str, Any], ...]
    source: str


def parse_jsonl(text: str, source: str) -> Dataset:
    """Parse and check every line; blank lines are skipped."""
    records: list[dict[str, Any]] = []
    fmt: Format | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        record = _record(line, where)
        kind = _format_of(record, where)
        if fmt is None:
            fmt = kind
        elif kind != fmt:
            raise DatasetError(
                f"{where}: a {kind} example in a {fmt} dataset (one format per file)"
            )
        _check(record, kind, where)
        records.append(record)
    if fmt is None:
        raise DatasetError(f"{source} has no examples")
    return Dataset(fmt, tuple(records), source)


def read_dataset(path: Path) -> tuple[Dataset, bytes]:
    """Parse a JSONL file; also return its bytes, which the manifest hashes."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{path.name} line {line}: not UTF-8") from exc
    return parse_jsonl(text, path.name), raw


def split_validation(dataset: Dataset, seed: int) -> tuple[Dataset, Dataset]:
    """Hold out about a tenth of the examples (at least one) when no validation set is given."""
    n = len(dataset.records)
    if n < 2:
        raise DatasetError(
            f"{dataset.source} has 1 example: at least 2 are needed to hold one out for "
            "validation (or pass --validation-data)"
        )
    held = max(1, round(n * VALIDATION_FRACTION))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    valid = {*order[:held]}
    train = tuple(r for i, r in enumerate(dataset.records) if i not in valid)
    kept = tuple(r for i, r in enumerate(dataset.records) if i in valid)
    return (
        Dataset(dataset.format, train, dataset.source),
        Dataset(dataset.format, kept, f"{dataset.source} (held out)"),
    )


def data_hash(*contents: bytes) -> str:
    digest = hashlib.sha256()
    for content in contents:
        digest.update(hashlib.sha256(content).digest())
    return f"sha256:{digest.hexdigest()}"


def _record(line: str, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where}: not valid JSON: {exc.msg} (column {exc.colno})") from exc
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def _format_of(record: dict[str, Any], where: str) -> Format:
    if "messages" in record:
        return "chat"
    if "prompt" in record or "completion" in record:
        return "completions"
    if "text" in record:
        return "text"
    keys = ", ".join(sorted(record)) or "none"
    raise DatasetError(
        f"{where}: no 'messages', 'prompt'/'completion' or 'text' field (found: {keys})"
    )


def _check(record: dict[str, Any], fmt: Format, where: str) -> None:
    if fmt == "chat":
        _check_chat(record["messages"], where)
    elif fmt == "completions":
        for key in ("prompt", "completion"):
            if not isinstance(record.get(key), str):
                raise DatasetError(f"{where}: '{key}' must be a string")
        if not record["completion"]:
            raise DatasetError(f"{where}: 'completion' is empty: nothing to learn")
    elif not isinstance(record["text"], str) or not record["text"].strip():
        raise DatasetError(f"{where}: 'text' must be a non-empty string")


def _check_chat(messages: Any, where: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise DatasetError(f"{where}: messages[{i}] must be an object with role and content")
        role = message.get("role")
        if role not in ROLES:
            raise DatasetError(
                f"{where}: messages[{i}].role {role!r} is not one of {', '.join(ROLES)}"
            )
        if not isinstance(message.get("content"), str):
            raise DatasetError(f"{where}: messages[{i}].content must be a string")
    if not any(m["role"] == "assistant" for m in messages):
        raise DatasetError(f"{where}: no assistant message: nothing to learn")
