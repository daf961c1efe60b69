"""Proxy mode's stack on threads: FastAPI apps on uvicorn, one event loop per thread, all
accepting on one socket and forwarding through one native `UpstreamClient`, with pydantic
validating each body and a prometheus-client counter shared by every loop.

The first test builds that stack from its parts; the second serves modelkube's own proxy-mode
app (`create_app`: keys, admission, metrics, error bodies) the same way. A runtime without
programs never imports DSPy, which cannot load on a free-threaded CPython (its orjson refuses
that build). Both run in both test runs; without the GIL the loops really overlap."""

import http.client
import json
import socket
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI, Response
from modelkube_native import UpstreamClient
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ConfigDict

from modelkube_serving.app import ServeConfig, create_app
from modelkube_serving.metrics import REQUESTS_TOTAL
from modelkube_serving.upstream.providers import resolve_upstream
from tests.fault_upstream import FaultUpstream
from tests.freethreaded.threads import run_threads

LOOPS = 4
CLIENTS = 16
CALLS = 10


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str
    content: str


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage]


def proxy_app(client: UpstreamClient, forwarded: Counter) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest) -> Response:
        body = request.model_dump_json().encode()
        answer = await client.arequest("POST", "/chat/completions", body)
        forwarded.labels(thread=threading.current_thread().name).inc()
        return Response(answer.body, answer.status, media_type="application/json")

    return app


@contextmanager
def servers(app: FastAPI, count: int) -> Iterator[int]:
    """`count` uvicorn servers, each on its own thread and event loop, on one listening socket."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=256)
    port = listener.getsockname()[1]
    running: list[tuple[uvicorn.Server, threading.Thread]] = []
    for index in range(count):
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(
            # A duplicate each: a server closes its listening socket when it stops.
            target=server.run,
            kwargs={"sockets": [listener.dup()]},
            name=f"loop-{index}",
        )
        thread.start()
        running.append((server, thread))
    try:
        deadline = time.monotonic() + 30  # tests.waiting needs httpx, which .venv-ft lacks
        while not all(server.started for server, _ in running):
            assert time.monotonic() < deadline, "the servers did not start"
            time.sleep(0.02)
        yield port
    finally:
        for server, _ in running:
            server.should_exit = True
        for _, thread in running:
            thread.join(30)
        listener.close()


def post(port: int, message: str, **fields: object) -> dict[str, object]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    messages = [{"role": "user", "content": message}]
    body = json.dumps({"model": "m", "messages": messages, **fields})
    connection.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    assert response.status == 200, raw
    if fields.get("stream"):
        frames = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
        assert frames[-1] == "[DONE]", frames
        chunks = [json.loads(frame) for frame in frames[:-1]]
        deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
        text = "".join(d.get("content") or "" for d in deltas)
        return {"choices": [{"message": {"content": text}}]}
    answer: dict[str, object] = json.loads(raw)
    return answer


def metric(port: int, name: str) -> float:
    """The sum of a metric's samples, read from the app's /metrics."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def test_event_loops_on_threads_proxy_through_one_native_client() -> None:
    upstream = FaultUpstream().start()
    registry = CollectorRegistry()
    forwarded = Counter("forwarded", "calls forwarded", ["thread"], registry=registry)
    client = UpstreamClient(upstream.url)
    try:
        with servers(proxy_app(client, forwarded), LOOPS) as port:

            def work(index: int) -> None:
                for turn in range(CALLS):
                    message = f"client {index} call {turn}"
                    answer = post(port, message)
                    choices = answer["choices"]
                    assert isinstance(choices, list)
                    assert choices[0]["message"]["content"] == f"echo: {message}"

            run_threads(CLIENTS, work)
    finally:
        upstream.stop()
    counts = {
        sample.labels["thread"]: sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "forwarded_total"
    }
    assert sum(counts.values()) == CLIENTS * CALLS
    assert set(counts) <= {f"loop-{i}" for i in range(LOOPS)}
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        assert not sys._is_gil_enabled()  # type: ignore[attr-defined,unused-ignore]


def test_the_runtimes_own_proxy_app_serves_from_event_loops_on_threads() -> None:
    upstream = FaultUpstream().start()
    target = resolve_upstream("custom", upstream.url, "their-model", None)
    config = ServeConfig(
        model_path=None, model_name="m", upstream=target, max_concurrent_requests=CLIENTS
    )
    try:
        with servers(create_app(config), LOOPS) as port:

            def work(index: int) -> None:
                for turn in range(CALLS):
                    message = f"client {index} call {turn}"
                    answer = post(port, message, stream=turn % 2 == 1)
                    choices = answer["choices"]
                    assert isinstance(choices, list)
                    assert choices[0]["message"]["content"] == f"echo: {message}"

            run_threads(CLIENTS, work)
            # A request is counted once its response has gone out, which may come after the
            # client has read the last byte: the count catches up a moment later. (Not
            # tests.waiting: the free-threaded venv has no httpx.)
            deadline = time.monotonic() + 10
            while metric(port, REQUESTS_TOTAL) < CLIENTS * CALLS:
                assert time.monotonic() < deadline, "not every request was counted"
                time.sleep(0.05)
            assert metric(port, REQUESTS_TOTAL) == CLIENTS * CALLS
    finally:
        upstream.stop()
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        assert not sys._is_gil_enabled()  # type: ignore[attr-defined,unused-ignore]
