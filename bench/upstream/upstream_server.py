"""A stand-in for a hosted provider: the OpenAI chat completions API on loopback, fast.

Raw asyncio protocol (uvloop when installed), HTTP/1.1 keep-alive and pipelining, a parser that
knows only Content-Length bodies. A bench fixture, not a server for anything else.

`python -m bench.upstream.upstream_server --port P [--chunks N]`
"""

import argparse
import asyncio
import contextlib
import signal
from typing import cast

from bench.upstream.responses import Responses

HEAD_END = b"\r\n\r\n"
MAX_HEAD = 64 * 1024


def _content_length(lowered_head: bytes) -> int:
    start = lowered_head.find(b"\r\ncontent-length:")
    if start < 0:
        return 0
    start += len(b"\r\ncontent-length:")
    end = lowered_head.find(b"\r\n", start)
    return int(lowered_head[start : end if end >= 0 else None])


class HttpProtocol(asyncio.Protocol):
    def __init__(self, responses: Responses) -> None:
        self.responses = responses
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out: list[bytes] = []
        close = False
        while not close:
            end = self.buffer.find(HEAD_END)
            if end < 0:
                close = len(self.buffer) > MAX_HEAD
                break
            lowered = bytes(self.buffer[:end]).lower()
            total = end + len(HEAD_END) + _content_length(lowered)
            if len(self.buffer) < total:
                break
            target = bytes(self.buffer[: self.buffer.find(b"\r\n")]).split(b" ")[1]
            body = bytes(self.buffer[end + len(HEAD_END) : total])
            del self.buffer[:total]
            if b"\r\ntransfer-encoding:" in lowered:
                out.append(self.responses.unsupported)
                close = True
            else:
                out.append(self.responses.answer(target, body))
                close = b"\r\nconnection: close" in lowered
        assert self.transport is not None
        if out:
            self.transport.write(b"".join(out))
        if close:
            self.transport.close()


async def serve(host: str, port: int, chunks: int) -> None:
    loop = asyncio.get_running_loop()
    responses = Responses(chunks)
    server = await loop.create_server(lambda: HttpProtocol(responses), host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream.upstream_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=16, help="content chunks per stream")
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(serve(args.host, args.port, args.chunks))


if __name__ == "__main__":
    main()
