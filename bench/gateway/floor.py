"""The floor under the gateway's added latency: a bare pass-through with no gateway logic.

`python -m bench.gateway.floor --upstream HOST:PORT --port N` serves one ASGI callable, no
framework, on uvicorn with the gateway's own server settings, and forwards every POST to the
one upstream through the Rust core's HTTP client, as the gateway does (a GET answers 200, for
the bench's wait until it is up). What it adds over a request sent straight to the pod is the
extra loopback hop, the HTTP parsing on both sides and the client's crossing into Rust and
back: the part of the gateway's added latency that no change to the gateway's own code can
remove. bench.gateway times it beside the gateway.

`--server front` serves the same pass-through from the Rust core's HttpFront instead of uvicorn
(native/src/front.rs: hyper on the core's runtime, a Python router asked once per request on
the tokio thread, the answer relayed by the same client): what the gateway's data path would
add on a Rust front, with no event loop on it.

`--relay stream` relays every answer chunk by chunk, as the gateway relays a streamed chat
(the native client's `astream`, one ASGI body message per chunk), for bench.gateway.relay_cpu;
the front relays as the chunks come in any case.

`--client asyncio` forwards through a bare HTTP/1.1 exchange on the event loop's own socket
instead (one keep-alive connection, Content-Length bodies: what the latency loop sends and
gets, nothing more): the same pass-through without the crossing into the tokio runtime and
back, so the difference of the two floors is what that crossing costs here. A measuring
device only: it has none of the native client's timeouts, retries or pooling.
"""

import argparse
import asyncio
import threading
from collections.abc import Awaitable, Callable

import uvicorn
from modelkube_native import HttpFront, UpstreamClient
from starlette.types import ASGIApp, Receive, Scope, Send

from modelkube_serving.gateway.command import server_options
from modelkube_serving.gateway.upstreams import CONNECT_TIMEOUT_S

Fetch = Callable[[str, bytes], Awaitable[tuple[int, bytes]]]


def native_client(upstream: str) -> UpstreamClient:
    return UpstreamClient(
        f"http://{upstream}",
        connect_timeout_s=CONNECT_TIMEOUT_S,
        max_retries=0,
        breaker_failures=0,
    )


def native_fetch(upstream: str) -> Fetch:
    client = native_client(upstream)
    headers = [("content-type", "application/json")]

    async def fetch(path: str, body: bytes) -> tuple[int, bytes]:
        answer = await client.arequest("POST", path, body, headers)
        return answer.status, answer.body

    return fetch


def asyncio_fetch(upstream: str) -> Fetch:
    host, port = upstream.rsplit(":", 1)
    connection: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def fetch(path: str, body: bytes) -> tuple[int, bytes]:
        if not connection:
            connection.append(await asyncio.open_connection(host, int(port)))
        reader, writer = connection[0]
        head = f"POST {path} HTTP/1.1\r\nhost: {upstream}\r\ncontent-type: application/json\r\n"
        writer.write(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        return int(lines[0].split()[1]), await reader.readexactly(int(fields["content-length"]))

    return fetch


async def _posted(scope: Scope, receive: Receive, send: Send) -> bytes | None:
    """A POST's body; None when this call was answered already: the lifespan (nothing to set
    up) or a GET (up: what the bench waits for before timing)."""
    if scope["type"] != "http":
        message = await receive()
        await send({"type": f"{message['type']}.complete"})
        return None
    if scope["method"] == "GET":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return None
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


def streamed_pass_through(upstream: str) -> ASGIApp:
    """Every POST's answer relayed chunk by chunk, as the gateway's `Forwarder.relay` does."""
    client = native_client(upstream)
    headers = [("content-type", "application/json")]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = await _posted(scope, receive, send)
        if body is None:
            return
        stream = await client.astream("POST", scope["path"], body, headers)
        try:
            content_type = stream.headers.get("content-type", "application/json").encode()
            start = {"type": "http.response.start", "status": stream.status,
                     "headers": [(b"content-type", content_type)]}  # fmt: skip
            await send(start)
            async for chunk in stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            stream.close()

    return app


def pass_through(fetch: Fetch) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = await _posted(scope, receive, send)
        if body is None:
            return
        status, answer = await fetch(scope["path"], body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    return app


def serve_front(upstream: str, port: int) -> None:
    """Until killed: every POST relayed to `upstream`; POST /healthz answers 200 (up)."""
    client = native_client(upstream)

    def router(
        _method: str, path: str, _auth: str | None, _body: bytes
    ) -> UpstreamClient | tuple[int, bytes]:
        return (200, b"{}") if path == "/healthz" else client

    front = HttpFront("127.0.0.1", port, router)
    try:
        threading.Event().wait()
    finally:
        front.close()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.gateway.floor")
    p.add_argument("--upstream", required=True, help="HOST:PORT of the pod")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--client", choices=["native", "asyncio"], default="native")
    p.add_argument("--server", choices=["uvicorn", "front"], default="uvicorn")
    p.add_argument("--relay", choices=["whole", "stream"], default="whole")
    args = p.parse_args()
    if args.server == "front":
        serve_front(args.upstream, args.port)
        return
    if args.relay == "stream":
        app = streamed_pass_through(args.upstream)
    else:
        fetch = (native_fetch if args.client == "native" else asyncio_fetch)(args.upstream)
        app = pass_through(fetch)
    uvicorn.run(app, port=args.port, **server_options("warning"))


if __name__ == "__main__":
    main()
