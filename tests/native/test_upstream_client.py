"""The native upstream client from Python, against a loopback upstream that misbehaves on cue:
answers, retries, streams, timeouts, the circuit breaker, pooling and bad arguments, each
through the blocking API and the asyncio one where both exist."""

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import pytest
from modelkube_native import (
    CircuitOpenError,
    InvalidArgumentError,
    UpstreamClient,
    UpstreamConnectError,
    UpstreamError,
    UpstreamResponse,
    UpstreamStream,
    UpstreamStreamError,
    UpstreamTimeoutError,
)

from tests.fault_upstream import Fault, FaultUpstream

CHAT = "/chat/completions"
Headers = list[tuple[str, str]] | None


def chat(content: str = "hi", *, stream: bool = False) -> bytes:
    message = {"role": "user", "content": content}
    return json.dumps({"model": "m", "messages": [message], "stream": stream}).encode()


def sse_text(body: bytes) -> str:
    """The completion's text from a whole SSE body, which must end with `[DONE]`."""
    frames = body.decode().split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    events = [json.loads(frame.removeprefix("data: ")) for frame in frames[:-2]]
    return "".join(e["choices"][0]["delta"]["content"] for e in events)


def client_for(upstream: FaultUpstream, **options: Any) -> UpstreamClient:
    options.setdefault("backoff_base_s", 0.01)  # backoff is waited for: keep the file fast
    return UpstreamClient(upstream.url, **options)


class Api:
    """The blocking calls, made straight from the test's coroutine: the upstream has its own
    thread and loop, so blocking this one is harmless."""

    async def request(
        self,
        client: UpstreamClient,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Headers = None,
    ) -> UpstreamResponse:
        return client.request(method, path, body, headers)

    async def stream(
        self,
        client: UpstreamClient,
        method: str,
        path: str,
        body: bytes | None = None,
    ) -> UpstreamStream:
        return client.stream(method, path, body)

    async def chunks(self, stream: UpstreamStream) -> AsyncGenerator[bytes, None]:
        for chunk in stream:
            yield chunk


class AsyncApi(Api):
    async def request(
        self,
        client: UpstreamClient,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Headers = None,
    ) -> UpstreamResponse:
        return await client.arequest(method, path, body, headers)

    async def stream(
        self,
        client: UpstreamClient,
        method: str,
        path: str,
        body: bytes | None = None,
    ) -> UpstreamStream:
        return await client.astream(method, path, body)

    async def chunks(self, stream: UpstreamStream) -> AsyncGenerator[bytes, None]:
        async for chunk in stream:
            yield chunk


async def read_all(api: Api, stream: UpstreamStream) -> list[bytes]:
    return [chunk async for chunk in api.chunks(stream)]


async def read_until_error(api: Api, stream: UpstreamStream) -> tuple[list[bytes], UpstreamError]:
    got: list[bytes] = []
    try:
        async for chunk in api.chunks(stream):
            got.append(chunk)
    except UpstreamError as error:
        return got, error
    raise AssertionError(f"the stream ended cleanly after {len(got)} chunks")


@pytest.fixture(scope="module")
def shared_upstream() -> Iterator[FaultUpstream]:
    upstream = FaultUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture
def upstream(shared_upstream: FaultUpstream) -> FaultUpstream:
    shared_upstream.reset()
    return shared_upstream


@pytest.fixture(params=[Api(), AsyncApi()], ids=["sync", "async"])
def api(request: pytest.FixtureRequest) -> Api:
    chosen: Api = request.param
    return chosen


# -- plain requests -----------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_request_answers_with_status_body_and_lower_case_headers(
    api: Api, upstream: FaultUpstream
) -> None:
    upstream.then(Fault(headers=(("X-Upstream-Id", "u1"),)))
    client = client_for(upstream, headers=[("Authorization", "Bearer sk-test")])
    body = chat("hello")
    answer = await api.request(client, "POST", CHAT, body, [("X-Request-Id", "r1")])
    assert (answer.status, answer.attempts) == (200, 1)
    assert json.loads(answer.body)["choices"][0]["message"]["content"] == "echo: hello"
    assert answer.headers["x-upstream-id"] == "u1"
    assert answer.headers["content-type"] == "application/json"
    assert all(name == name.lower() for name in answer.headers)
    [seen] = upstream.received
    assert (seen.method, seen.path, seen.raw) == ("POST", "/v1" + CHAT, body)
    assert seen.headers["authorization"] == "Bearer sk-test"
    assert seen.headers["x-request-id"] == "r1"


@pytest.mark.asyncio
async def test_a_get_without_a_body_reaches_the_upstream(api: Api, upstream: FaultUpstream) -> None:
    answer = await api.request(client_for(upstream), "GET", "/models")
    assert answer.status == 200
    [seen] = upstream.received
    assert (seen.method, seen.path, seen.raw) == ("GET", "/v1/models", b"")


# -- retries ------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_429_is_retried_after_its_retry_after(api: Api, upstream: FaultUpstream) -> None:
    upstream.then(Fault(429, headers=(("Retry-After", "0.2"),)))
    client = client_for(upstream)
    started = time.monotonic()
    answer = await api.request(client, "POST", CHAT, chat())
    assert (answer.status, answer.attempts) == (200, 2)
    assert time.monotonic() - started >= 0.18  # waited as asked, not the 10 ms backoff
    assert client.counters()[0] == 1


@pytest.mark.asyncio
async def test_server_errors_are_retried_until_an_answer(api: Api, upstream: FaultUpstream) -> None:
    upstream.then(Fault(500), Fault(502), Fault(503))
    client = client_for(upstream, max_retries=3)
    answer = await api.request(client, "POST", CHAT, chat())
    assert (answer.status, answer.attempts) == (200, 4)
    assert len(upstream.received) == 4
    assert client.counters() == (3, 0)


@pytest.mark.asyncio
async def test_without_retries_the_first_503_comes_back(api: Api, upstream: FaultUpstream) -> None:
    upstream.then(Fault(503))
    client = client_for(upstream, max_retries=0)
    answer = await api.request(client, "POST", CHAT, chat())
    assert (answer.status, answer.attempts) == (503, 1)
    assert json.loads(answer.body)["error"]["message"] == "injected 503"
    assert client.counters()[0] == 0


@pytest.mark.asyncio
async def test_a_retry_after_beyond_the_backoff_cap_comes_back_at_once(
    api: Api, upstream: FaultUpstream
) -> None:
    upstream.then(Fault(429, headers=(("Retry-After", "30"),)))
    client = client_for(upstream, backoff_max_s=1.0)
    answer = await api.request(client, "POST", CHAT, chat())
    assert (answer.status, answer.attempts) == (429, 1)
    assert answer.headers["retry-after"] == "30"  # for the caller to pass on
    assert len(upstream.received) == 1
    assert client.counters()[0] == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [400, 404])
async def test_client_errors_are_not_retried(
    api: Api, upstream: FaultUpstream, status: int
) -> None:
    upstream.then(Fault(status))
    client = client_for(upstream)
    answer = await api.request(client, "POST", CHAT, chat())
    assert (answer.status, answer.attempts) == (status, 1)
    assert len(upstream.received) == 1
    assert client.counters()[0] == 0


# -- streams ------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_stream_arrives_in_order_and_whole(api: Api, upstream: FaultUpstream) -> None:
    text = "one two three four five"
    upstream.then(Fault(content=text))
    stream = await api.stream(client_for(upstream), "POST", CHAT, chat(stream=True))
    assert (stream.status, stream.attempts) == (200, 1)
    assert stream.headers["content-type"] == "text/event-stream"
    chunks = await read_all(api, stream)
    assert sse_text(b"".join(chunks)) == text
    assert await read_all(api, stream) == []  # ended streams stay ended


@pytest.mark.asyncio
async def test_a_stream_arrives_chunk_by_chunk(api: Api, upstream: FaultUpstream) -> None:
    upstream.then(Fault(content="a b c d", chunk_delay_s=0.15))  # five frames, 0.75 s
    started = time.monotonic()
    stream = await api.stream(client_for(upstream), "POST", CHAT, chat(stream=True))
    arrivals: list[float] = []
    async for _chunk in api.chunks(stream):
        arrivals.append(time.monotonic() - started)
    assert len(arrivals) >= 2
    assert arrivals[-1] - arrivals[0] >= 0.4  # the first did not wait for the last


@pytest.mark.asyncio
async def test_a_cut_stream_raises_after_the_chunks_that_arrived(
    api: Api, upstream: FaultUpstream
) -> None:
    upstream.then(Fault(content="a b c d", cut_after=2))
    stream = await api.stream(client_for(upstream), "POST", CHAT, chat(stream=True))
    got, error = await read_until_error(api, stream)
    assert isinstance(error, UpstreamStreamError)
    assert isinstance(error, ConnectionError)
    frames = b"".join(got).decode().split("\n\n")
    assert [json.loads(f[6:])["choices"][0]["delta"]["content"] for f in frames[:-1]] == [
        "a ",
        "b ",
    ]
    assert await read_all(api, stream) == []


@pytest.mark.asyncio
async def test_closing_a_stream_midway_ends_it_cleanly(api: Api, upstream: FaultUpstream) -> None:
    upstream.then(Fault(content=" ".join(["w"] * 20), chunk_delay_s=0.05))
    client = client_for(upstream)
    stream = await api.stream(client, "POST", CHAT, chat(stream=True))
    chunks = api.chunks(stream)
    assert await anext(chunks)
    await chunks.aclose()
    stream.close()
    stream.close()
    assert await read_all(api, stream) == []
    assert (await api.request(client, "POST", CHAT, chat())).status == 200


@pytest.mark.asyncio
async def test_an_error_status_on_a_stream_is_readable_as_a_body(
    api: Api, upstream: FaultUpstream
) -> None:
    upstream.then(Fault(400, body={"error": {"message": "no such model", "type": "x"}}))
    stream = await api.stream(client_for(upstream), "POST", CHAT, chat(stream=True))
    assert (stream.status, stream.attempts) == (400, 1)
    body = json.loads(b"".join(await read_all(api, stream)))
    assert body["error"]["message"] == "no such model"


# -- timeouts and connection errors -------------------------------------------------------
@pytest.mark.asyncio
async def test_a_slow_answer_times_out_on_every_attempt(api: Api, upstream: FaultUpstream) -> None:
    upstream.then(*[Fault(delay_s=1.0)] * 3)
    client = client_for(upstream, response_timeout_s=0.2, max_retries=2)
    with pytest.raises(UpstreamTimeoutError, match="waiting for the response") as caught:
        await api.request(client, "POST", CHAT, chat())
    assert isinstance(caught.value, TimeoutError)
    assert len(upstream.received) == 3
    assert client.counters()[0] == 2


@pytest.mark.asyncio
async def test_a_silence_mid_stream_times_out(api: Api, upstream: FaultUpstream) -> None:
    upstream.then(Fault(content="a b c", chunk_delay_s=1.5))
    client = client_for(upstream, read_timeout_s=0.3)
    stream = await api.stream(client, "POST", CHAT, chat(stream=True))
    got, error = await read_until_error(api, stream)
    assert isinstance(error, UpstreamTimeoutError)
    assert "reading the body" in str(error)
    assert got  # the first frame came before the silence


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.asyncio
async def test_a_closed_port_raises_a_connect_error_after_the_retries(
    api: Api, closed_port: int
) -> None:
    client = UpstreamClient(f"http://127.0.0.1:{closed_port}/v1", backoff_base_s=0.01)
    with pytest.raises(UpstreamConnectError) as caught:
        await api.request(client, "POST", CHAT, chat())
    assert isinstance(caught.value, ConnectionError)
    assert client.counters()[0] == 2  # the default max_retries


# -- the circuit breaker ------------------------------------------------------------------
COOLDOWN_S = 0.5


async def open_breaker(api: Api, upstream: FaultUpstream) -> UpstreamClient:
    client = client_for(upstream, breaker_failures=3, breaker_cooldown_s=COOLDOWN_S, max_retries=0)
    upstream.then(*[Fault(500)] * 3)
    for _ in range(3):
        assert client.breaker_state == "closed"
        assert (await api.request(client, "POST", CHAT, chat())).status == 500
    assert client.breaker_state == "open"
    return client


async def wait_out_the_cooldown(client: UpstreamClient) -> None:
    await asyncio.sleep(COOLDOWN_S + 0.05)
    assert client.breaker_state == "half_open"


@pytest.mark.asyncio
async def test_an_open_breaker_refuses_without_calling_the_upstream(
    api: Api, upstream: FaultUpstream
) -> None:
    client = await open_breaker(api, upstream)
    with pytest.raises(CircuitOpenError) as caught:
        await api.request(client, "POST", CHAT, chat())
    assert 0 < caught.value.retry_after_s <= COOLDOWN_S
    with pytest.raises(CircuitOpenError):
        await api.stream(client, "POST", CHAT, chat(stream=True))
    assert len(upstream.received) == 3
    assert client.counters() == (0, 1)


@pytest.mark.asyncio
async def test_a_successful_probe_closes_the_breaker(api: Api, upstream: FaultUpstream) -> None:
    client = await open_breaker(api, upstream)
    await wait_out_the_cooldown(client)
    assert (await api.request(client, "POST", CHAT, chat())).status == 200
    assert client.breaker_state == "closed"
    assert len(upstream.received) == 4
    assert client.counters()[1] == 1


@pytest.mark.asyncio
async def test_a_failed_probe_opens_the_breaker_again(api: Api, upstream: FaultUpstream) -> None:
    client = await open_breaker(api, upstream)
    await wait_out_the_cooldown(client)
    upstream.then(Fault(502))
    assert (await api.request(client, "POST", CHAT, chat())).status == 502
    assert client.breaker_state == "open"
    with pytest.raises(CircuitOpenError):
        await api.request(client, "POST", CHAT, chat())
    assert len(upstream.received) == 4
    assert client.counters()[1] == 2


@pytest.mark.asyncio
async def test_a_cancelled_probe_gives_its_slot_back(upstream: FaultUpstream) -> None:
    client = await open_breaker(AsyncApi(), upstream)
    await wait_out_the_cooldown(client)
    upstream.then(Fault(delay_s=1.0))
    with pytest.raises(TimeoutError):  # the caller gave up: the probe's call is dropped
        await asyncio.wait_for(client.arequest("POST", CHAT, chat()), 0.2)
    await asyncio.sleep(0.05)
    assert (await client.arequest("POST", CHAT, chat())).status == 200
    assert client.breaker_state == "closed"


# -- pooling and concurrency --------------------------------------------------------------
@pytest.mark.asyncio
async def test_sequential_requests_reuse_one_connection(api: Api, upstream: FaultUpstream) -> None:
    client = client_for(upstream)
    for i in range(50):
        answer = await api.request(client, "POST", CHAT, chat(f"n{i}"))
        assert json.loads(answer.body)["choices"][0]["message"]["content"] == f"echo: n{i}"
    # Far fewer than 50. Not always 1: when a call finds no idle connection at once, hyper's
    # pool races a new one against the one about to come back (hyperium/hyper#4134); a
    # blocking caller's next call can come that fast.
    assert upstream.connections <= 5


@pytest.mark.asyncio
async def test_concurrent_async_requests_share_a_pool_that_is_reused(
    upstream: FaultUpstream,
) -> None:
    client = client_for(upstream)

    async def wave() -> None:
        upstream.then(*[Fault(delay_s=0.1)] * 32)  # each holds its connection for a while
        answers = await asyncio.gather(
            *(client.arequest("POST", CHAT, chat(f"n{i}")) for i in range(32))
        )
        assert [a.status for a in answers] == [200] * 32

    await wave()
    assert 1 <= upstream.connections <= 32
    await asyncio.sleep(0.1)
    await wave()
    assert upstream.connections <= 32  # the second wave found the first one's connections
    assert len(upstream.received) == 64


def test_every_event_loop_gets_its_own_answers(upstream: FaultUpstream) -> None:
    """The awaitables settle on the loop that awaits them (each loop watches its own wake-up
    socket): loops one after another, as asyncio.run makes them, and loops in two threads at
    once; a closed loop's socket pair goes when a later loop comes, so loops do not leak
    descriptors."""
    client = client_for(upstream)

    async def calls(tag: str) -> list[str]:
        answers = await asyncio.gather(
            *(client.arequest("POST", CHAT, chat(f"{tag}{i}")) for i in range(8))
        )
        streamed = await client.astream("POST", CHAT, chat(f"{tag}s", stream=True))
        text = sse_text(b"".join([chunk async for chunk in streamed]))
        return [json.loads(a.body)["choices"][0]["message"]["content"] for a in answers] + [text]

    def expected(tag: str) -> list[str]:
        return [f"echo: {tag}{i}" for i in range(8)] + [f"echo: {tag}s"]

    for n in range(3):
        assert asyncio.run(calls(f"seq{n}-")) == expected(f"seq{n}-")
    descriptors = len(list(Path("/proc/self/fd").iterdir()))
    for n in range(20):
        asyncio.run(calls(f"more{n}-"))
    assert len(list(Path("/proc/self/fd").iterdir())) <= descriptors + 4

    got: dict[str, list[str]] = {}

    def run(tag: str) -> None:
        got[tag] = asyncio.run(calls(tag))

    threads = [threading.Thread(target=run, args=(f"t{n}-",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert got == {tag: expected(tag) for tag in ("t0-", "t1-")}


def test_threads_make_blocking_requests_at_once(upstream: FaultUpstream) -> None:
    """The GIL is released while a call waits: eight threads each wait 0.3 s at the upstream,
    together, so the pool opens more than one connection (one after the other, each call would
    find the last one's connection idle and reuse it, as sequential requests do)."""
    client = client_for(upstream)
    upstream.then(*[Fault(delay_s=0.3)] * 8)
    statuses: list[int] = []
    start = threading.Barrier(8)

    def call() -> None:
        start.wait()
        statuses.append(client.request("POST", CHAT, chat()).status)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert statuses == [200] * 8
    assert upstream.connections > 1, "the calls ran one after the other"


# -- bad arguments ------------------------------------------------------------------------
def test_a_base_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="must start with http"):
        UpstreamClient("ftp://x")


@pytest.mark.parametrize(
    "name",
    [
        "connect_timeout_s",
        "response_timeout_s",
        "read_timeout_s",
        "backoff_base_s",
        "backoff_max_s",
        "breaker_cooldown_s",
    ],
)
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_durations_must_be_positive_and_finite(name: str, value: float) -> None:
    options: dict[str, Any] = {name: value}
    with pytest.raises(InvalidArgumentError, match=f"{name} must be > 0"):
        UpstreamClient("http://127.0.0.1:9/v1", **options)


def test_a_bad_default_header_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="bad header name"):
        UpstreamClient("http://127.0.0.1:9/v1", headers=[("bad header", "x")])
    with pytest.raises(InvalidArgumentError, match="bad value for header"):
        UpstreamClient("http://127.0.0.1:9/v1", headers=[("x-ok", "a\nb")])


@pytest.mark.asyncio
async def test_a_bad_request_header_or_method_is_refused_before_sending(
    api: Api, upstream: FaultUpstream
) -> None:
    client = client_for(upstream)
    with pytest.raises(InvalidArgumentError, match="bad header name"):
        await api.request(client, "POST", CHAT, chat(), [("bad:name", "x")])
    with pytest.raises(InvalidArgumentError, match="bad HTTP method"):
        await api.request(client, "GE T", CHAT)
    assert upstream.received == []
