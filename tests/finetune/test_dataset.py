"""Datasets are checked line by line before training: each problem names its line."""

import json

import pytest

from modelkube_serving.finetune.dataset import (
    DatasetError,
    data_hash,
    parse_jsonl,
    split_validation,
)

CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}


def lines(*records: object) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "train.jsonl has no examples"),
        ("\n  \n", "train.jsonl has no examples"),
        (lines(CHAT, "{not json"), "train.jsonl line 2: not valid JSON: Expecting property name"),
        (lines("[1, 2]"), "train.jsonl line 1: expected a JSON object, got list"),
        (lines({"input": "x"}), "line 1: no 'messages', 'prompt'/'completion' or 'text' field"),
        (lines(CHAT, {"text": "x"}), "line 2: a text example in a chat dataset"),
        (lines({"messages": []}), "line 1: 'messages' must be a non-empty list"),
        (lines({"messages": ["hi"]}), "line 1: messages[0] must be an object"),
        (
            lines({"messages": [{"role": "bot", "content": "x"}]}),
            "line 1: messages[0].role 'bot' is not one of system, user, assistant, tool",
        ),
        (
            lines({"messages": [{"role": "user", "content": 3}]}),
            "line 1: messages[0].content must be a string",
        ),
        (
            lines({"messages": [{"role": "user", "content": "x"}]}),
            "line 1: no assistant message: nothing to learn",
        ),
        (lines({"prompt": "q"}), "line 1: 'completion' must be a string"),
        (lines({"prompt": "q", "completion": ""}), "line 1: 'completion' is empty"),
        (lines({"text": "  "}), "line 1: 'text' must be a non-empty string"),
    ],
)
def test_bad_datasets_name_the_line_and_the_problem(text: str, message: str) -> None:
    with pytest.raises(DatasetError) as err:
        parse_jsonl(text, "train.jsonl")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_formats_are_recognised_and_blank_lines_skipped() -> None:
    assert parse_jsonl(lines(CHAT, "", CHAT), "d").format == "chat"
    assert len(parse_jsonl(lines(CHAT, "", CHAT), "d").records) == 2
    assert parse_jsonl(lines({"prompt": "q", "completion": "a"}), "d").format == "completions"
    assert parse_jsonl(lines({"text": "t"}), "d").format == "text"


def test_a_tenth_is_held_out_for_validation_reproducibly() -> None:
    data = parse_jsonl(lines(*({"text": f"t{i}"} for i in range(30))), "d")
    train, valid = split_validation(data, seed=0)
    assert (len(train.records), len(valid.records)) == (27, 3)
    assert split_validation(data, seed=0) == (train, valid)
    assert not {r["text"] for r in train.records} & {r["text"] for r in valid.records}
    with pytest.raises(DatasetError, match="at least 2 are needed"):
        split_validation(parse_jsonl(lines({"text": "t"}), "d"), seed=0)


def test_the_data_hash_covers_every_file() -> None:
    assert data_hash(b"a", b"b") != data_hash(b"a", b"c")
    assert data_hash(b"a", b"b") == data_hash(b"a", b"b")
    assert data_hash(b"ab", b"") != data_hash(b"a", b"b")
