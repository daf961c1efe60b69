"""The floor under the gateway's added latency: a bare pass-through with no gateway logic.

`python -m bench.gateway.floor --upstream HOST:PORT --port N` serves one ASGI callable, no
framework, on uvicorn with the gateway's own server settings, and forwards every POST to the
one upstream through the Rust core's HTTP client, as the gateway does (a GET answers 200, for
the bench's wait until it is up). What it adds over a request sent straight to the pod is the
extra loopback hop, the HTTP parsing on both sides and the client's crossing into Rust and
back: the part of the gateway's added latency that no change to the gateway's own code can
remove. bench.gateway times it beside the gateway.
"""

import argparse

import uvicorn
from modelkube_native import UpstreamClient
from starlette.types import ASGIApp, Receive, Scope, Send

from modelkube_serving.gateway.command import server_options
from modelkube_serving.gateway.upstreams import CONNECT_TIMEOUT_S


def pass_through(upstream: str) -> ASGIApp:
    client = UpstreamClient(
        f"http://{upstream}",
        connect_timeout_s=CONNECT_TIMEOUT_S,
        max_retries=0,
        breaker_failures=0,
    )
    headers = [("content-type", "application/json")]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan: nothing to set up
            message = await receive()
            await send({"type": f"{message['type']}.complete"})
            return
        if scope["method"] == "GET":  # up: what the bench waits for before timing
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        answer = await client.arequest(scope["method"], scope["path"], body, headers)
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})

    return app


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.gateway.floor")
    p.add_argument("--upstream", required=True, help="HOST:PORT of the pod")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    uvicorn.run(pass_through(args.upstream), port=args.port, **server_options("warning"))


if __name__ == "__main__":
    main()
