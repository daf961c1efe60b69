"""What `modelkube optimize` reads before its first call: the program, the trainset, the URL."""

import json
from pathlib import Path

import pytest

from modelkube_serving.programs.remote import ServiceArgumentError, api_base, api_key
from modelkube_serving.programs.spec import ProgramSpecError, parse_program
from modelkube_serving.programs.trainset import TrainsetError, read_trainset

QA = {"name": "qa", "signature": "question -> answer"}
SUMMARIZE = {"name": "summarize", "signature": "text -> summary", "module": "chain_of_thought"}


@pytest.mark.parametrize(
    ("document", "name", "chosen"),
    [
        (QA, None, "qa"),
        (QA, "qa", "qa"),
        ({"programs": [SUMMARIZE]}, None, "summarize"),
        ({"programs": [QA, SUMMARIZE]}, "summarize", "summarize"),
    ],
)
def test_a_program_object_or_a_programs_file_gives_one_program(
    document: dict[str, object], name: str | None, chosen: str
) -> None:
    assert parse_program(json.dumps(document), "p.json", name).name == chosen


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        ("{", None, "p.json: not valid JSON: Expecting property name"),
        ("[]", None, "p.json: top level: Input should be a valid dictionary"),
        (json.dumps({"name": "qa"}), None, "p.json: signature: Field required"),
        (json.dumps({**QA, "module": "react"}), None, "p.json: module: Input should be"),
        (json.dumps({**QA, "extra": 1}), None, "p.json: extra: Extra inputs are not permitted"),
        (json.dumps(QA), "other", "p.json: holds program qa, not other"),
        (json.dumps({"programs": [QA, SUMMARIZE]}), None, "holds 2 programs, choose one"),
        (json.dumps({"programs": [QA]}), "nope", "no program named nope; it holds ['qa']"),
        (json.dumps({"programs": []}), None, "holds 0 programs"),
    ],
)
def test_bad_program_documents_say_what_is_wrong(text: str, name: str | None, message: str) -> None:
    with pytest.raises(ProgramSpecError) as raised:
        parse_program(text, "p.json", name)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_trainset_keeps_the_signature_fields_and_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    rows = [{"question": "q1", "answer": "a1", "source": "x"}, {"question": "q2", "answer": 2}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert read_trainset(path, ["question"], ["answer"]) == [
        {"question": "q1", "answer": "a1"},
        {"question": "q2", "answer": 2},
    ]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"question": "q", "answer": "a"}', "{oops"], "line 2: not valid JSON"),
        (['["question", "answer"]'], "line 1: not a JSON object with the fields"),
        (['{"question": "q"}', '{"answer": "a"}'], "line 1: missing field(s) answer"),
        (['{"question": "q", "answer": "a"}', "{}"], "line 2: missing field(s) question, answer"),
        (['{"question": "q", "answer": "a"}'], "needs at least 2 examples, found 1"),
        ([], "needs at least 2 examples, found 0"),
    ],
)
def test_bad_trainset_lines_are_named_by_number(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines))
    with pytest.raises(TrainsetError) as raised:
        read_trainset(path, ["question"], ["answer"])
    assert message in str(raised.value)
    assert str(path) in str(raised.value)


def test_a_missing_trainset_is_a_trainset_error(tmp_path: Path) -> None:
    with pytest.raises(TrainsetError, match=r"cannot read .*nope\.jsonl: No such file"):
        read_trainset(tmp_path / "nope.jsonl", ["q"], ["a"])


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://runtime:8000", "http://runtime:8000/v1"),
        ("http://runtime:8000/", "http://runtime:8000/v1"),
        ("http://runtime:8000/v1", "http://runtime:8000/v1"),
        ("https://runtime.example/v1/", "https://runtime.example/v1"),
    ],
)
def test_the_service_url_works_with_or_without_v1(url: str, base: str) -> None:
    assert api_base(url) == base


@pytest.mark.parametrize("url", ["runtime:8000", "ftp://runtime", "http://", ""])
def test_a_service_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(ServiceArgumentError, match="--service-url must be an http"):
        api_base(url)


def test_the_api_key_comes_from_modelkube_then_openai_variables() -> None:
    assert api_key({"MODELKUBE_API_KEY": "mk", "OPENAI_API_KEY": "oa"}) == "mk"
    assert api_key({"MODELKUBE_API_KEY": "", "OPENAI_API_KEY": "oa"}) == "oa"
    assert api_key({}) == "unused"
