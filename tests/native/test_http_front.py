"""HttpFront, the first layer of the gateway's Rust front: POSTs routed by a Python callable on
the tokio thread, relayed through the native client to a real runtime (read back through the
official openai client), answered by the router itself, or refused with OpenAI's error body."""

import json
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from modelkube_native import HttpFront, UpstreamClient

from tests.serving.inprocess import InProcessRuntime


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRuntime]:
    log = tmp_path_factory.mktemp("front") / "runtime.log"
    server = InProcessRuntime(["--model", "builtin://tiny"], Path(log)).start()
    yield server
    server.stop()


@pytest.fixture
def front_of() -> Iterator[list[HttpFront]]:
    fronts: list[HttpFront] = []
    yield fronts
    for front in fronts:
        front.close()


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> list[BaseException | None]:
    """What the routers raised, as sys.unraisablehook got it."""
    got: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: got.append(u.exc_value))
    return got


def start(fronts: list[HttpFront], router: object) -> str:
    front = HttpFront("127.0.0.1", 0, router)  # type: ignore[arg-type]
    fronts.append(front)
    return f"http://127.0.0.1:{front.port}"


def test_a_chat_is_relayed_to_the_upstream_the_router_names(
    runtime: InProcessRuntime, front_of: list[HttpFront]
) -> None:
    client = UpstreamClient(runtime.url)
    seen: list[tuple[str, dict[str, object], str]] = []

    def router(path: str, body: bytes) -> UpstreamClient:
        seen.append((path, json.loads(body), threading.current_thread().name))
        return client

    url = start(front_of, router)
    answer = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    chat = answer.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=4
    )
    assert chat.choices[0].message.content is not None
    assert chat.usage is not None and chat.usage.completion_tokens >= 1
    (path, body, thread) = seen[0]
    assert path == "/v1/chat/completions"
    assert body["messages"] == [{"role": "user", "content": "hello"}]
    assert thread != threading.main_thread().name  # asked on the tokio thread
    # The upstream's own error bodies come back as they are.
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        answer.chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}], max_tokens=1
        )


def test_the_router_may_answer_itself_and_its_errors_are_500s(
    front_of: list[HttpFront], unraisable: list[BaseException | None]
) -> None:
    calls = []

    def router(path: str, body: bytes) -> tuple[int, bytes]:
        calls.append(path)
        if path == "/fail":
            raise RuntimeError("the router broke")
        return 404, b'{"error": {"message": "no such model"}}'

    url = start(front_of, router)
    with httpx.Client(base_url=url) as http:
        refused = http.post("/v1/chat/completions", content=b"{}")
        assert refused.status_code == 404
        assert refused.json() == {"error": {"message": "no such model"}}
        assert refused.headers["content-type"] == "application/json"
        failed = http.post("/fail", content=b"{}")
        assert failed.status_code == 500
        assert failed.json()["error"]["type"] == "server_error"
        got = http.get("/v1/models")
        assert got.status_code == 405 and got.json()["error"]["type"] == "invalid_request_error"
        # The server goes on after each.
        assert http.post("/again", content=b"{}").status_code == 404
    assert calls == ["/v1/chat/completions", "/fail", "/again"]
    assert [str(e) for e in unraisable] == ["the router broke"]


def test_an_upstream_that_refuses_is_a_502_naming_it(front_of: list[HttpFront]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = UpstreamClient(f"http://127.0.0.1:{port}", max_retries=0, breaker_failures=0)
    url = start(front_of, lambda path, body: client)
    answer = httpx.post(f"{url}/v1/completions", content=b"{}")
    assert answer.status_code == 502
    assert "could not be reached" in answer.json()["error"]["message"]


def test_a_router_answering_nonsense_is_a_500(
    front_of: list[HttpFront], unraisable: list[BaseException | None]
) -> None:
    url = start(front_of, lambda path, body: "not a route")
    assert httpx.post(f"{url}/v1/completions", content=b"{}").status_code == 500
    assert [type(e) for e in unraisable] == [TypeError]


def test_a_closed_front_stops_listening(front_of: list[HttpFront]) -> None:
    url = start(front_of, lambda path, body: (200, b"{}"))
    assert httpx.post(url, content=b"{}").status_code == 200
    front_of[0].close()
    with pytest.raises(httpx.ConnectError):
        httpx.post(url, content=b"{}")


def test_a_port_in_use_is_an_oserror_naming_it() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            HttpFront("127.0.0.1", port, lambda path, body: (200, b"{}"))
