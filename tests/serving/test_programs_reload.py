"""Programs follow the watched programs file without a restart; a bad file keeps the old ones."""

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from modelkube_serving.programs.service import ProgramService
from modelkube_serving.programs.spec import ProgramSpec
from tests.serving.conftest import StartRuntime
from tests.serving.inprocess import InProcessRuntime
from tests.serving.test_cli import run_main
from tests.waiting import wait_until

QA = {"name": "qa", "signature": "question -> answer", "demos": [{"question": "q", "answer": "a"}]}
SUMMARIZE = {"name": "summarize", "signature": "text -> summary", "module": "chain_of_thought"}
TRANSLATE = {"name": "translate", "signature": "text, language -> translation"}
FOLLOW_S = 2.0  # four polls a second: a change shows well within this


def programs_json(*programs: dict[str, Any]) -> str:
    return json.dumps({"programs": list(programs)})


def write_configmap(directory: Path, text: str) -> Path:
    """Update the file as the kubelet does: a new data directory, then an atomic swap of the
    `..data` symlink, so the file's path never changes but its inode does."""
    version = directory / f"..{time.monotonic_ns()}"
    version.mkdir()
    (version / "programs.json").write_text(text)
    (directory / "..data_tmp").symlink_to(version.name)
    os.replace(directory / "..data_tmp", directory / "..data")
    link = directory / "programs.json"
    if not link.is_symlink():
        link.symlink_to("..data/programs.json")
    return link


# -- the service, without an engine --------------------------------------------------------
def service_on(path: Path, *specs: dict[str, Any]) -> ProgramService:
    parsed = tuple(ProgramSpec.model_validate(s) for s in specs)
    return ProgramService(parsed, cast(Any, None), path)  # the backend runs programs only


def names(service: ProgramService) -> list[str]:
    return [card["id"] for card in service.cards()]


@pytest.mark.asyncio
async def test_a_poll_adds_and_removes_programs_and_a_running_call_keeps_its_module(
    tmp_path: Path,
) -> None:
    path = write_configmap(tmp_path, programs_json(QA))
    service = service_on(path, QA)
    running = service.programs["qa"]  # what a call in flight holds
    await service.poll()
    assert service.programs["qa"] is running  # same content: nothing rebuilt
    write_configmap(tmp_path, programs_json({**QA, "demos": []}, SUMMARIZE))
    await service.poll()
    assert names(service) == ["qa", "summarize"]
    assert service.programs["qa"] is not running and running.module.predictors()[0].demos
    write_configmap(tmp_path, programs_json(SUMMARIZE))
    await service.poll()
    assert names(service) == ["summarize"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        (programs_json({"name": "Bad Name", "signature": "q -> a"}), "programs.0.name"),
        (programs_json(QA, {"name": "broken", "signature": "q, a"}), "program broken: bad sig"),
        (programs_json(QA, QA), "program names must be unique: qa"),
    ],
)
@pytest.mark.asyncio
async def test_a_bad_file_keeps_the_programs_and_logs_one_line_once(
    tmp_path: Path, text: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_configmap(tmp_path, programs_json(QA, SUMMARIZE))
    service = service_on(path, QA, SUMMARIZE)
    write_configmap(tmp_path, text)
    with caplog.at_level(logging.INFO, logger="modelkube.programs"):
        for _ in range(3):
            await service.poll()
    assert names(service) == ["qa", "summarize"]
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert message in record.getMessage() and "keeping the programs served before" in (
        record.getMessage()
    )
    assert "\n" not in record.getMessage()
    write_configmap(tmp_path, programs_json(TRANSLATE))  # fixed: followed again
    await service.poll()
    assert names(service) == ["translate"]


@pytest.mark.asyncio
async def test_a_missing_file_means_no_programs_until_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "programs.json"
    service = service_on(path)
    await service.poll()
    assert names(service) == []
    path.write_text(programs_json(QA))
    await service.poll()
    assert names(service) == ["qa"]
    path.unlink()
    await service.poll()
    assert names(service) == []


# -- a real runtime ----------------------------------------------------------------------------
def listed(server: InProcessRuntime) -> list[str]:
    body = httpx.get(f"{server.url}/v1/programs", timeout=10).json()
    return [card["id"] for card in body["data"]]


def test_the_runtime_follows_the_file_and_keeps_serving_through_garbage(
    start_runtime: StartRuntime, tmp_path: Path
) -> None:
    configmap = tmp_path / "configmap"
    configmap.mkdir()
    # The operator may create the key later: no file at start is no programs, not an error.
    server = start_runtime("--programs-file", str(configmap / "programs.json"))
    assert listed(server) == []
    write_configmap(configmap, programs_json(QA))
    wait_until(lambda: listed(server) == ["qa"], FOLLOW_S, "qa added")
    write_configmap(configmap, programs_json(QA, SUMMARIZE, TRANSLATE))
    wait_until(lambda: listed(server) == ["qa", "summarize", "translate"], FOLLOW_S, "added")
    write_configmap(configmap, programs_json(TRANSLATE))
    wait_until(lambda: listed(server) == ["translate"], FOLLOW_S, "qa, summarize removed")
    write_configmap(configmap, "garbage{")
    wait_until(lambda: "not valid JSON" in server.log(), FOLLOW_S, "the error logged")
    assert listed(server) == ["translate"]
    response = httpx.post(f"{server.url}/v1/programs/qa", json={"inputs": {}}, timeout=10)
    assert response.status_code == 404
    write_configmap(configmap, programs_json(SUMMARIZE))
    wait_until(lambda: listed(server) == ["summarize"], FOLLOW_S, "followed after garbage")


def test_a_program_dspy_cannot_build_stops_serve_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "programs.json"
    path.write_text(programs_json(QA, {"name": "broken", "signature": "question answer"}))
    code, stderr = run_main(
        monkeypatch, capsys, "serve", "--model", "builtin://tiny", "--programs-file", str(path)
    )
    assert code == 2
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"modelkube serve: error: {path}: program broken: bad signature")
    assert "Traceback" not in stderr
