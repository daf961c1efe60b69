"""Streams relayed through asyncio: the native client's `astream` against httpx's, side by side.

64 streamed chat completions at once from our runtime (builtin://tiny on llama.cpp, in its own
process; `ignore_eos`, so every stream is 48 tokens long), read chunk by chunk on one uvloop
event loop, as the gateway and proxy mode relay a pod's tokens. What is timed is the reader's
CPU (this process's), per chunk read: the crossing from the HTTP client into Python, once per
chunk. Rounds alternate between the two clients.
"""

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvloop
from modelkube_native import UpstreamClient

from tests.serving.runtime_process import RuntimeProcess

STREAMS = 64
TOKENS = 48
ROUNDS = 3
HEADERS = [("content-type", "application/json")]
PATH = "/v1/chat/completions"


def stream_body(tokens: int) -> bytes:
    """A streamed chat of exactly `tokens` tokens (`ignore_eos`) from builtin://tiny."""
    return json.dumps(
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": "Tell me a story."}],
            "max_tokens": tokens,
            "ignore_eos": True,
            "stream": True,
        }
    ).encode()


BODY = stream_body(TOKENS)
# The runtime the streams come from: every stream at once in its batch.
RUNTIME_ARGS = ["--model", "builtin://tiny", "--served-model-name", "tiny", "--engine", "llamacpp",
                "--max-concurrent-requests", str(STREAMS)]  # fmt: skip


async def _native(url: str) -> int:
    client = UpstreamClient(url, max_retries=0, breaker_failures=0)

    async def one() -> int:
        stream = await client.astream("POST", PATH, BODY, HEADERS)
        return sum([1 async for _ in stream])

    return sum(await asyncio.gather(*(one() for _ in range(STREAMS))))


async def _httpx(url: str) -> int:
    limits = httpx.Limits(max_connections=STREAMS)
    async with httpx.AsyncClient(base_url=url, limits=limits) as client:

        async def one() -> int:
            request = client.build_request("POST", PATH, content=BODY, headers=dict(HEADERS))
            response = await client.send(request, stream=True)
            try:
                return sum([1 async for _ in response.aiter_raw()])
            finally:
                await response.aclose()

        return sum(await asyncio.gather(*(one() for _ in range(STREAMS))))


def _timed(read: Any, url: str) -> tuple[float, int]:
    """Reader CPU seconds and chunks read, for one round of every stream at once."""

    async def round_() -> tuple[float, int]:
        await read(url)  # connections opened and warm before the timed round
        started = time.process_time()
        chunks = await read(url)
        return time.process_time() - started, chunks

    return uvloop.run(round_())


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as logs:
        runtime = RuntimeProcess(RUNTIME_ARGS, Path(logs) / "runtime.log").start(timeout=300)
        try:
            per_chunk: dict[str, list[float]] = {"native": [], "httpx": []}
            for i in range(ROUNDS):
                order = ["native", "httpx"] if i % 2 == 0 else ["httpx", "native"]
                for name in order:
                    cpu, chunks = _timed(_native if name == "native" else _httpx, runtime.url)
                    per_chunk[name].append(cpu / chunks * 1e6)
        finally:
            runtime.stop()
    native = statistics.median(per_chunk["native"])
    peer = statistics.median(per_chunk["httpx"])
    return {
        "streams": STREAMS,
        "tokens_per_stream": TOKENS,
        "native_us_per_chunk": native,
        "httpx_us_per_chunk": peer,
        "rounds": per_chunk,
        "ratio": native / peer,
    }


def table(row: dict[str, Any]) -> str:
    return (
        f"reader CPU per chunk, {row['streams']} streams x {row['tokens_per_stream']} tokens  "
        "| native us | httpx us | native/httpx\n"
        f"{'-' * 58}+-----------+----------+-------------\n"
        f"{'astream (native) vs AsyncClient.send(stream=True) (httpx)':<58}| "
        f"{row['native_us_per_chunk']:9.1f} | {row['httpx_us_per_chunk']:8.1f} | "
        f"{row['ratio']:11.2f}x"
    )


if __name__ == "__main__":
    print(table(run()))
