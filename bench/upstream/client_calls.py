"""One chat completion through each Python client, sync and async, whole and streamed.

For fairness our client does what a caller of it must: `json.dumps(body).encode()` per call,
`json.loads` of the reply, and for a stream the SSE framing and `json.loads` of every event;
the `openai` client builds its pydantic objects, which is its share of the same work.
"""

import json
from typing import TYPE_CHECKING, Any, Protocol

from openai import AsyncOpenAI, OpenAI

from bench.upstream.load import API_KEY
from bench.upstream.proxies import BODY

if TYPE_CHECKING:
    from modelkube_native import UpstreamClient

HEADERS = [("content-type", "application/json"), ("authorization", f"Bearer {API_KEY}")]
PATH = "/chat/completions"


class Calls(Protocol):
    def call(self) -> None: ...
    def stream(self) -> None: ...
    async def acall(self) -> None: ...
    async def astream(self) -> None: ...


class OpenAICalls:
    def __init__(self, base_url: str) -> None:
        self.sync = OpenAI(base_url=base_url, api_key=API_KEY, max_retries=0)
        self.aio = AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=0)
        self.args: dict[str, Any] = {k: v for k, v in BODY.items()}

    def call(self) -> None:
        reply = self.sync.chat.completions.create(**self.args)
        assert reply.choices[0].message.content

    def stream(self) -> None:
        events = sum(1 for _ in self.sync.chat.completions.create(**self.args, stream=True))
        assert events

    async def acall(self) -> None:
        reply = await self.aio.chat.completions.create(**self.args)
        assert reply.choices[0].message.content

    async def astream(self) -> None:
        events = 0
        async for _ in await self.aio.chat.completions.create(**self.args, stream=True):
            events += 1
        assert events


class SseEvents:
    """SSE framing over raw byte chunks: every `data:` event but [DONE] is decoded."""

    def __init__(self) -> None:
        self.buffer = b""
        self.events = 0

    def feed(self, chunk: bytes) -> None:
        *complete, self.buffer = (self.buffer + chunk).split(b"\n\n")
        for event in complete:
            if event.startswith(b"data: ") and event != b"data: [DONE]":
                json.loads(event[6:])
                self.events += 1


def native_client_class() -> tuple["type[UpstreamClient] | None", str]:
    """The native client's class, or None and why this build of modelkube_native lacks it."""
    try:
        from modelkube_native import UpstreamClient
    except ImportError as error:  # the Rust core without it: an older build
        return None, f"not available: {error}"
    return UpstreamClient, ""


class NativeCalls:
    def __init__(self, client_class: "type[UpstreamClient]", base_url: str) -> None:
        self.client = client_class(base_url)

    @staticmethod
    def _reply(status: int, payload: bytes) -> None:
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {payload[:200]!r}")
        assert json.loads(payload)["choices"][0]["message"]["content"]

    def call(self) -> None:
        reply = self.client.request("POST", PATH, json.dumps(BODY).encode(), HEADERS)
        self._reply(reply.status, reply.body)

    def stream(self) -> None:
        events = SseEvents()
        body = json.dumps({**BODY, "stream": True}).encode()
        for chunk in self.client.stream("POST", PATH, body, HEADERS):
            events.feed(chunk)
        assert events.events

    async def acall(self) -> None:
        reply = await self.client.arequest("POST", PATH, json.dumps(BODY).encode(), HEADERS)
        self._reply(reply.status, reply.body)

    async def astream(self) -> None:
        events = SseEvents()
        body = json.dumps({**BODY, "stream": True}).encode()
        async for chunk in await self.client.astream("POST", PATH, body, HEADERS):
            events.feed(chunk)
        assert events.events
