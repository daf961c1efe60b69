"""Streams relayed through asyncio: the native client's `astream` against httpx's, side by side.

64 streams at once, each 200 server-sent events 2 ms apart from a loopback upstream in another
process (bench/native/sse_upstream.py), read chunk by chunk on one uvloop event loop, as the
gateway and proxy mode relay a model's tokens. What is timed is the reader's CPU (this
process's), per chunk read: the crossing from the HTTP client into Python, once per chunk.
Rounds alternate between the two clients.
"""

import asyncio
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx
import uvloop
from modelkube_native import UpstreamClient

from tests.serving.runtime_process import free_port
from tests.waiting import wait_until

STREAMS = 64
CHUNKS = 200
ROUNDS = 3
HEADERS = [("content-type", "application/json")]


async def _native(url: str) -> int:
    client = UpstreamClient(url, max_retries=0, breaker_failures=0)

    async def one() -> int:
        stream = await client.astream("POST", "/v1/chat/completions", b"{}", HEADERS)
        return sum([1 async for _ in stream])

    return sum(await asyncio.gather(*(one() for _ in range(STREAMS))))


async def _httpx(url: str) -> int:
    limits = httpx.Limits(max_connections=STREAMS)
    async with httpx.AsyncClient(base_url=url, limits=limits) as client:

        async def one() -> int:
            request = client.build_request("POST", "/v1/chat/completions", content=b"{}")
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
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "bench.native.sse_upstream", str(port), str(CHUNKS)]
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url), 30, "the SSE upstream")
        per_chunk: dict[str, list[float]] = {"native": [], "httpx": []}
        for i in range(ROUNDS):
            order = ["native", "httpx"] if i % 2 == 0 else ["httpx", "native"]
            for name in order:
                cpu, chunks = _timed(_native if name == "native" else _httpx, url)
                per_chunk[name].append(cpu / chunks * 1e6)
    finally:
        upstream.terminate()
        upstream.wait(10)
    native = statistics.median(per_chunk["native"])
    peer = statistics.median(per_chunk["httpx"])
    return {
        "streams": STREAMS,
        "chunks_per_stream": CHUNKS,
        "native_us_per_chunk": native,
        "httpx_us_per_chunk": peer,
        "rounds": per_chunk,
        "ratio": native / peer,
    }


def _answers(url: str) -> bool:
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", content=b"{}") as response:
            return response.status_code == 200
    except httpx.HTTPError:
        return False


def table(row: dict[str, Any]) -> str:
    return (
        f"reader CPU per chunk, {row['streams']} streams x {row['chunks_per_stream']} chunks "
        "| native us | httpx us | native/httpx\n"
        f"{'-' * 58}+-----------+----------+-------------\n"
        f"{'astream (native) vs AsyncClient.send(stream=True) (httpx)':<58}| "
        f"{row['native_us_per_chunk']:9.1f} | {row['httpx_us_per_chunk']:8.1f} | "
        f"{row['ratio']:11.2f}x"
    )


if __name__ == "__main__":
    print(table(run()))
