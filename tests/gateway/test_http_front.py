"""HttpFront, the first layer of the gateway's Rust front: POSTs routed by a Python callable on
the tokio thread, relayed through the native client to a real runtime (read back through the
official openai client), answered by the router itself, or refused with OpenAI's error body."""

import json
import socket
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from modelkube_native import HttpFront, UpstreamClient

from tests.serving.conftest import scrape
from tests.serving.inprocess import InProcessRuntime
from tests.waiting import wait_until

IN_FLIGHT = "modelkube_requests_in_flight{model=tiny}"


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


def start(fronts: list[HttpFront], router: object, fallback: UpstreamClient | None = None) -> str:
    front = HttpFront("127.0.0.1", 0, router, fallback=fallback)  # type: ignore[arg-type]
    fronts.append(front)
    return f"http://127.0.0.1:{front.port}"


def start_with_done(
    fronts: list[HttpFront], client: UpstreamClient, fallback: UpstreamClient | None = None
) -> tuple[str, list[object]]:
    """A front relaying everything to `client`; what each relay's `done` was called with."""
    done: list[object] = []
    router = lambda method, path, authorization, body: (client, done.append)  # noqa: E731
    return start(fronts, router, fallback), done


def refusing_upstream() -> tuple[UpstreamClient, int]:
    """A client for a port nothing listens on (tried once, no breaker), and the port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return UpstreamClient(f"http://127.0.0.1:{port}", max_retries=0, breaker_failures=0), port


def raw_upstream(*answers: bytes) -> tuple[str, threading.Thread, list[bytes]]:
    """A server that takes one request per answer, one connection each, keeps each request's
    head (lower-cased) and sends the answer's bytes as they are."""
    listener = socket.create_server(("127.0.0.1", 0))
    heads: list[bytes] = []

    def serve() -> None:
        with listener:
            for answer in answers:
                with listener.accept()[0] as conn:
                    received = b""
                    while b"\r\n\r\n" not in received:
                        received += conn.recv(65536)
                    heads.append(received.split(b"\r\n\r\n")[0].lower())
                    conn.sendall(answer)

    thread = threading.Thread(target=serve)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", thread, heads


def whole_answer(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
    return f"{head}content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body


def test_a_chat_is_relayed_to_the_upstream_the_router_names(
    runtime: InProcessRuntime, front_of: list[HttpFront]
) -> None:
    client = UpstreamClient(runtime.url)
    seen: list[tuple[str, dict[str, object], str]] = []

    def router(method: str, path: str, authorization: str | None, body: bytes) -> UpstreamClient:
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


def test_a_stream_is_relayed_as_it_comes_and_done_is_called_once_after_it(
    runtime: InProcessRuntime, front_of: list[HttpFront]
) -> None:
    url, done = start_with_done(front_of, UpstreamClient(runtime.url))
    answer = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    stream = answer.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=400,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    # The first chunk came while the model still writes the rest: relayed, not gathered.
    assert scrape(runtime.url)[IN_FLIGHT] == 1
    assert done == []
    rest = list(stream)
    assert rest[-1].choices[0].finish_reason == "length"
    wait_until(lambda: done == [200], 5, "done called")


def test_a_client_leaving_mid_stream_cancels_it_upstream_and_calls_done(
    runtime: InProcessRuntime, front_of: list[HttpFront]
) -> None:
    url, done = start_with_done(front_of, UpstreamClient(runtime.url))
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stream": True}
    with (
        httpx.Client(timeout=60) as http,
        http.stream(
            "POST",
            f"{url}/v1/chat/completions",
            json={**chat, "max_tokens": 1800, "ignore_eos": True},
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
        assert scrape(runtime.url)[IN_FLIGHT] == 1
    wait_until(lambda: scrape(runtime.url)[IN_FLIGHT] == 0, 5, "the pod's slot freed")
    wait_until(lambda: done == [200], 5, "done called")  # the 200 went out before it left


def test_done_is_called_when_the_upstream_cannot_be_reached_and_what_it_raises_is_reported(
    front_of: list[HttpFront], unraisable: list[BaseException | None]
) -> None:
    client, _ = refusing_upstream()

    def done(status: int) -> None:
        raise RuntimeError(f"done broke: {status}")

    url = start(front_of, lambda method, path, authorization, body: (client, done))
    assert httpx.post(f"{url}/v1/completions", content=b"{}").status_code == 502
    wait_until(lambda: [str(e) for e in unraisable] == ["done broke: 502"], 5, "done called")
    assert httpx.post(f"{url}/v1/completions", content=b"{}").status_code == 502


def broken_upstream(content_type: str) -> tuple[str, threading.Thread]:
    """A server that answers one request with a 200, one chunk of body, and a cut connection."""
    head = f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n"
    chunk = b'data: {"partial": true}\n\n'
    cut = f"{head}transfer-encoding: chunked\r\n\r\n{len(chunk):x}\r\n".encode() + chunk
    url, thread, _ = raw_upstream(cut + b"\r\n")
    return url, thread


def test_an_event_stream_broken_off_upstream_ends_with_an_error_frame(
    front_of: list[HttpFront],
) -> None:
    upstream, served = broken_upstream("text/event-stream")
    url, done = start_with_done(front_of, UpstreamClient(upstream, max_retries=0))
    with httpx.stream("POST", f"{url}/v1/chat/completions", content=b"{}") as response:
        frames = [line for line in response.iter_lines() if line]
    served.join(10)
    assert frames[0] == 'data: {"partial": true}'
    error = json.loads(frames[-1].removeprefix("data: "))["error"]
    assert error["code"] == "upstream_unreachable"
    assert "stopped mid-answer" in error["message"]
    wait_until(lambda: done == [200], 5, "done called")


def test_another_body_broken_off_upstream_cuts_the_connection(front_of: list[HttpFront]) -> None:
    upstream, served = broken_upstream("application/json")
    client = UpstreamClient(upstream, max_retries=0)
    url = start(front_of, lambda method, path, authorization, body: client)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{url}/v1/chat/completions", content=b"{}")
    served.join(10)


def test_the_router_may_answer_itself_and_its_errors_are_500s(
    front_of: list[HttpFront], unraisable: list[BaseException | None]
) -> None:
    calls = []

    def router(method: str, path: str, authorization: str | None, body: bytes) -> tuple[int, bytes]:
        calls.append(f"{method} {path}")
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
        assert http.get("/v1/models?x=1").status_code == 404
        # The server goes on after each.
        assert http.post("/again", content=b"{}").status_code == 404
    assert calls == [
        "POST /v1/chat/completions",
        "POST /fail",
        "GET /v1/models",
        "POST /again",
    ]
    assert [str(e) for e in unraisable] == ["the router broke"]


def test_an_upstream_that_refuses_is_a_502_naming_it(front_of: list[HttpFront]) -> None:
    client, _ = refusing_upstream()
    url = start(front_of, lambda method, path, authorization, body: client)
    answer = httpx.post(f"{url}/v1/completions", content=b"{}")
    assert answer.status_code == 502
    assert "could not be reached" in answer.json()["error"]["message"]


def test_a_router_answering_nonsense_is_a_500(
    front_of: list[HttpFront], unraisable: list[BaseException | None]
) -> None:
    url = start(front_of, lambda method, path, authorization, body: "not a route")
    assert httpx.post(f"{url}/v1/completions", content=b"{}").status_code == 500
    assert [type(e) for e in unraisable] == [TypeError]


def test_a_closed_front_stops_listening(front_of: list[HttpFront]) -> None:
    url = start(front_of, lambda method, path, authorization, body: (200, b"{}"))
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
            HttpFront("127.0.0.1", port, lambda method, path, authorization, body: (200, b"{}"))


def test_what_the_router_leaves_goes_to_the_fallback_with_its_query_and_headers(
    runtime: InProcessRuntime, front_of: list[HttpFront]
) -> None:
    seen: list[tuple[str, str, str | None]] = []

    def router(
        method: str, path: str, authorization: str | None, body: bytes
    ) -> tuple[int, bytes] | None:
        seen.append((method, path, authorization))
        return None

    front = HttpFront("127.0.0.1", 0, router, fallback=UpstreamClient(runtime.url))
    front_of.append(front)
    url = f"http://127.0.0.1:{front.port}"
    headers = {"authorization": "Bearer k1", "x-request-id": "r1"}
    with httpx.Client(base_url=url, headers=headers) as http:
        models = http.get("/v1/models?limit=5")
        assert models.status_code == 200
        assert models.json()["data"][0]["id"] == "tiny"
        assert http.get("/healthz").status_code == 200
        missing = http.post("/v1/nothing", content=b"{}")
        assert missing.status_code == 404 and "error" in missing.json()
    assert seen == [
        ("GET", "/v1/models", "Bearer k1"),
        ("GET", "/healthz", "Bearer k1"),
        ("POST", "/v1/nothing", "Bearer k1"),
    ]


def test_without_a_fallback_what_the_router_leaves_is_a_404(front_of: list[HttpFront]) -> None:
    url = start(front_of, lambda method, path, authorization, body: None)
    answer = httpx.get(f"{url}/v1/models")
    assert answer.status_code == 404
    assert answer.json()["error"]["type"] == "invalid_request_error"


def test_a_routed_upstream_that_cannot_be_reached_goes_to_the_fallback_after_done(
    runtime: InProcessRuntime, front_of: list[HttpFront]
) -> None:
    gone, _ = refusing_upstream()
    url, done = start_with_done(front_of, gone, UpstreamClient(runtime.url))
    answer = openai.OpenAI(
        base_url=f"{url}/v1", api_key="unused", max_retries=0
    ).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=2
    )
    assert answer.choices[0].message.content is not None
    assert done == [None]  # the relay answered no one: the fallback did


def test_a_draining_upstream_goes_to_the_fallback(
    runtime: InProcessRuntime, front_of: list[HttpFront]
) -> None:
    upstream, thread, _ = raw_upstream(
        whole_answer("503 Service Unavailable", b'{"error": {"message": "draining"}}')
    )
    draining = UpstreamClient(upstream, max_retries=0, breaker_failures=0)
    url, done = start_with_done(front_of, draining, UpstreamClient(runtime.url))
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    answer = httpx.post(f"{url}/v1/chat/completions", json=chat)
    thread.join(10)
    assert answer.status_code == 200 and answer.json()["object"] == "chat.completion"
    assert done == [None]


def test_the_fallback_is_told_what_was_tried_and_a_client_cannot_say_it(
    front_of: list[HttpFront],
) -> None:
    gone, port = refusing_upstream()
    fallback, thread, heads = raw_upstream(*[whole_answer("200 OK", b"{}")] * 2)
    routes = iter([(gone, lambda status: None), None])  # routed, then left to the fallback
    front = HttpFront(
        "127.0.0.1",
        0,
        lambda method, path, authorization, body: next(routes),
        fallback=UpstreamClient(fallback),
    )
    front_of.append(front)
    url = f"http://127.0.0.1:{front.port}/v1/completions"
    forged = {"x-modelkube-tried": "10.0.0.9:8000 gone", "x-kept": "yes"}
    for _ in range(2):
        assert httpx.post(url, content=b"{}", headers=forged).status_code == 200
    thread.join(10)

    def tried(head: bytes) -> list[bytes]:
        return [line for line in head.split(b"\r\n") if line.startswith(b"x-modelkube-tried")]

    routed, left = heads
    assert tried(routed) == [f"x-modelkube-tried: 127.0.0.1:{port} refused".encode()]
    assert tried(left) == []  # only the front says what it tried
    assert b"x-kept: yes" in routed and b"x-kept: yes" in left  # the client's others go on


def test_an_answer_started_after_the_front_closed_closes_its_connection(
    front_of: list[HttpFront],
) -> None:
    """As uvicorn's once it stops: the client's next request goes to another gateway replica.
    Here the answer waits in the router until the front is closed (as a held request waits in
    the app for the gateway's shutdown)."""
    entered, release = threading.Event(), threading.Event()

    def router(method: str, path: str, authorization: str | None, body: bytes) -> object:
        if path == "/held":
            entered.set()
            release.wait(10)
        return 503, b'{"error": {"message": "shutting down"}}'

    front = HttpFront("127.0.0.1", 0, router)  # type: ignore[arg-type]
    front_of.append(front)
    url = f"http://127.0.0.1:{front.port}"
    with httpx.Client(base_url=url) as http:
        assert "connection" not in http.post("/open", content=b"{}").headers
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(http.post, "/held", content=b"{}")
            assert entered.wait(10)
            front.close()
            release.set()
            answer = held.result(10)
    assert answer.status_code == 503
    assert answer.headers["connection"] == "close"
