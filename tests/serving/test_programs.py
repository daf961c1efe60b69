"""Declarative DSPy programs served by the runtime, run in-process on its own engine."""

import json
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.serving import test_fuzz as fuzz
from tests.serving.conftest import StartRuntime, scrape
from tests.serving.inprocess import InProcessRuntime
from tests.serving.test_cli import run_main

PROGRAMS = {
    "programs": [
        {
            "name": "qa",
            "signature": "question -> answer",
            "module": "predict",
            "instructions": "Answer in one word.",
            "demos": [{"question": "What serves the model?", "answer": "runtime"}],
        },
        {"name": "summarize", "signature": "text -> summary", "module": "chain_of_thought"},
    ]
}


@pytest.fixture(scope="module")
def server(
    start_runtime: StartRuntime, tmp_path_factory: pytest.TempPathFactory
) -> InProcessRuntime:
    path = tmp_path_factory.mktemp("programs") / "programs.json"
    path.write_text(json.dumps(PROGRAMS))
    return start_runtime("--programs-file", str(path))


def test_programs_are_listed_with_their_fields(server: InProcessRuntime) -> None:
    body = httpx.get(f"{server.url}/v1/programs", timeout=10).json()
    cards = {p["id"]: p for p in body["data"]}
    assert cards["qa"]["inputs"] == ["question"] and cards["qa"]["outputs"] == ["answer"]
    assert cards["qa"]["demos"] == 1
    assert cards["summarize"]["module"] == "chain_of_thought"
    assert cards["summarize"]["outputs"] == ["reasoning", "summary"]


def test_random_weights_answer_in_the_signatures_fields_through_the_engine(
    server: InProcessRuntime,
) -> None:
    """builtin://tiny has random weights, yet the JSON adapter's schema, constrained, makes
    every answer parse into the program's fields (it was a 422 before structured output)."""
    before = scrape(server.url).get("modelkube_generation_tokens_total{model=tiny}", 0.0)
    for name, inputs in (("qa", {"question": "Hi?"}), ("summarize", {"text": "A long day."})):
        response = httpx.post(
            f"{server.url}/v1/programs/{name}", json={"inputs": inputs}, timeout=300
        )
        assert response.status_code == 200, response.text
        result = response.json()
        fields = ["answer"] if name == "qa" else ["reasoning", "summary"]
        assert sorted(result["outputs"]) == fields
        assert all(isinstance(result["outputs"][f], str) for f in fields)
        assert result["usage"]["completion_tokens"] > 0
    after = scrape(server.url).get("modelkube_generation_tokens_total{model=tiny}", 0.0)
    assert after > before, "the program's calls did not go through the runtime's engine"


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/programs/nope", {"inputs": {}}, 404, "The program `nope` does not exist."),
        ("/v1/programs/qa", {"inputs": {}}, 400, "takes inputs ['question']: missing"),
        ("/v1/programs/qa", {"inputs": {"question": "q", "x": 1}}, 400, "unknown ['x']"),
        ("/v1/programs/qa", {"input": {}}, 400, "Missing required parameter: 'inputs'."),
        ("/v1/programs/qa", {"inputs": {"question": [None]}}, 400, "at 'inputs.question'"),
        ("/v1/programs/qa", {"inputs": {"question": 42}}, 400, "valid string"),
        ("/v1/programs/qa", {"inputs": {"question": "\ud800"}}, 400, "lone UTF-16 surrogate"),
        ("/v1/programs/qa", {"inputs": {"\ud800": ""}}, 400, "'inputs.\\ud800'"),
    ],
)
def test_bad_program_calls_get_openai_errors(
    server: InProcessRuntime, path: str, body: dict[str, object], status: int, message: str
) -> None:
    # json.dumps writes a lone surrogate as its escape, as a JavaScript client would.
    content = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    response = httpx.post(f"{server.url}{path}", content=content, headers=headers, timeout=30)
    assert response.status_code == status
    assert message in response.json()["error"]["message"]


def test_a_bad_programs_file_stops_serve_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "programs.json"
    bad.write_text(json.dumps({"programs": [{"name": "Bad Name", "signature": "q -> a"}]}))
    code, stderr = run_main(
        monkeypatch, capsys, "serve", "--model", "builtin://tiny", "--programs-file", str(bad)
    )
    assert code == 2
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("modelkube serve: error: ")
    assert "programs.0.name" in last


# Inputs as a client may send them: the signature's fields or others, with any JSON value
# (text that breaks tokenizers included), and bodies that are not the request's shape at all.
program_inputs = st.dictionaries(
    st.sampled_from(["question", "text", "answer"]) | fuzz.texts,
    fuzz.texts | fuzz.json_values,
    max_size=3,
)
program_bodies = (
    st.fixed_dictionaries({"inputs": program_inputs})
    | st.fixed_dictionaries({"inputs": fuzz.json_values}, optional={"x": fuzz.json_values})
    | fuzz.json_values
)
INPUT_FIELDS = {"qa": "question", "summarize": "text"}
# Calls that run: a program's own input field with text (or any JSON value, which the field's
# type refuses); then calls of any name with any body.
program_calls = st.one_of(
    st.sampled_from(sorted(INPUT_FIELDS)).flatmap(
        lambda name: st.tuples(
            st.just(name),
            st.fixed_dictionaries(
                {
                    "inputs": st.fixed_dictionaries(
                        {INPUT_FIELDS[name]: fuzz.texts | fuzz.json_values}
                    )
                }
            ),
        )
    ),
    st.tuples(st.sampled_from(sorted(INPUT_FIELDS)) | fuzz.texts, program_bodies),
)


@settings(fuzz.FUZZ, max_examples=max(fuzz.EXAMPLES // 4, 1))
@given(call=program_calls)
def test_generated_program_calls_never_fail_the_server(
    server: InProcessRuntime, call: tuple[str, Any]
) -> None:
    name, body = call
    quoted = urllib.parse.quote(name.encode("utf-8", "surrogatepass"), safe="").replace(".", "%2E")
    response = httpx.post(
        f"{server.url}/v1/programs/{quoted}",
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        timeout=120,
    )
    assert response.status_code < 500, response.text
    event(f"status {response.status_code}")
    if response.status_code == 307:  # `/v1/programs/`: Starlette's redirect to the list
        assert name == "" and response.headers["location"].endswith("/v1/programs")
    elif response.status_code == 200:
        result = response.json()
        fields = ["answer"] if name == "qa" else ["reasoning", "summary"]
        assert sorted(result["outputs"]) == fields, result
        assert all(isinstance(result["outputs"][f], str) for f in fields), result
    else:
        assert response.status_code in fuzz.ERROR_STATUSES, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str) and error["message"], error
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
