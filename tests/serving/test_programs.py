"""Declarative DSPy programs served by the runtime, run in-process on its own engine."""

import json
from pathlib import Path

import httpx
import pytest

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
    ],
)
def test_bad_program_calls_get_openai_errors(
    server: InProcessRuntime, path: str, body: dict[str, object], status: int, message: str
) -> None:
    response = httpx.post(f"{server.url}{path}", json=body, timeout=30)
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
