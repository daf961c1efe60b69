"""A hosted provider on loopback that misbehaves on cue: 429s, 500s, slow answers, cut streams.

It speaks enough of OpenAI's chat and text completions API for the proxy and the native client,
over real HTTP/1.1 with keep-alive, on its own thread and event loop. Tests queue what the next
requests get (`script`), and read what arrived (`received`) and how many connections were made.
"""

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Fault:
    """What one request gets. `status` other than 200 answers `body` (or an error) with it."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: dict[str, Any] | None = None  # an error body, or a whole answer to send instead
    delay_s: float = 0.0  # before the headers
    chunk_delay_s: float = 0.0  # between stream chunks
    cut_after: int | None = None  # stream chunks sent before the connection is dropped
    content: str | None = None  # the completion's text (default: echo the last message)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    method: str = "POST"
    raw: bytes = b""  # the body as it came, for checks byte for byte


@dataclass
class FaultUpstream:
    host: str = "127.0.0.1"
    port: int = 0
    script: deque[Fault] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def then(self, *faults: Fault) -> "FaultUpstream":
        self.script.extend(faults)
        return self

    def reset(self) -> None:
        self.script.clear()
        self.received.clear()
        self.connections = 0

    def start(self) -> "FaultUpstream":
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(
                asyncio.start_server(self._connection, self.host, self.port)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def close() -> None:
            server.close()
            # End the connections still open (idle keep-alives, answers still sleeping) so their
            # sockets close here rather than warn, unclosed, in whatever test runs at the next GC.
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            await server.wait_closed()
            await asyncio.sleep(0)  # the transports' connection_lost callbacks

        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        body = json.loads(raw) if raw else {}
        self.received.append(Received(path, headers, body, method, raw))
        fault = self.script.popleft() if self.script else Fault()
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault.status != 200:
            error = fault.body or {"error": {"message": f"injected {fault.status}", "type": "x"}}
            _send(writer, fault.status, fault.headers, json.dumps(error).encode())
            await writer.drain()
            return True
        if body.get("stream"):
            return await self._stream(writer, path, body, fault)
        answer = fault.body or _completion(path, body, _text(body, fault))
        _send(writer, 200, fault.headers, json.dumps(answer).encode())
        await writer.drain()
        return True

    async def _stream(
        self, writer: asyncio.StreamWriter, path: str, body: dict[str, Any], fault: Fault
    ) -> bool:
        status = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        writer.write(status + b"transfer-encoding: chunked\r\n\r\n")
        words = _text(body, fault).split(" ")
        events = [
            _chunk(path, body, w + (" " if i < len(words) - 1 else "")) for i, w in enumerate(words)
        ]
        if body.get("stream_options", {}).get("include_usage"):
            events.append(
                {
                    "id": "x",
                    "object": "chat.completion.chunk",
                    "choices": [],
                    "usage": _usage(words),
                }
            )
        frames = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [
            b"data: [DONE]\n\n"
        ]
        for i, frame in enumerate(frames):
            if fault.cut_after is not None and i >= fault.cut_after:
                writer.transport.abort()  # no final chunk: the client sees a cut body
                return False
            writer.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            await writer.drain()
            if fault.chunk_delay_s:
                await asyncio.sleep(fault.chunk_delay_s)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


def _send(
    writer: asyncio.StreamWriter, status: int, headers: tuple[tuple[str, str], ...], body: bytes
) -> None:
    lines = [
        f"HTTP/1.1 {status} X",
        "content-type: application/json",
        f"content-length: {len(body)}",
    ]
    lines += [f"{name}: {value}" for name, value in headers]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def _text(body: dict[str, Any], fault: Fault) -> str:
    if fault.content is not None:
        return fault.content
    if "messages" in body:
        return f"echo: {body['messages'][-1].get('content', '')}"
    return f"echo: {body.get('prompt', '')}"


def _usage(words: list[str]) -> dict[str, int]:
    return {"prompt_tokens": 7, "completion_tokens": len(words), "total_tokens": 7 + len(words)}


def _completion(path: str, body: dict[str, Any], text: str) -> dict[str, Any]:
    created, model = int(time.time()), body.get("model", "")
    usage = _usage(text.split(" "))
    if path.endswith("/chat/completions"):
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }
        return {
            "id": "chatcmpl-up",
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [choice],
            "usage": usage,
        }
    choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
    return {
        "id": "cmpl-up",
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage,
    }


def _chunk(path: str, body: dict[str, Any], piece: str) -> dict[str, Any]:
    model = body.get("model", "")
    if path.endswith("/chat/completions"):
        choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
        return {
            "id": "chatcmpl-up",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [choice],
        }
    return {
        "id": "cmpl-up",
        "object": "text_completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "text": piece, "finish_reason": None}],
    }
