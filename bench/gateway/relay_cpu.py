"""Streams through the front: the relay's CPU per chunk on uvicorn against on the Rust HttpFront.

`python -m bench.gateway.relay_cpu` starts our runtime (builtin://tiny on llama.cpp,
`ignore_eos`, so every stream is 192 tokens long) and two bare pass-throughs to it
(`bench.gateway.floor`): one on uvicorn relaying chunk by chunk as the gateway does
(`--relay stream`: the native client's `astream`, one ASGI body message per chunk), one on the
Rust core's HttpFront (a Python router asked once per request; the chunks never enter Python).
64 streamed chat completions at once go through each in turn, rounds alternating which goes
first. What is timed is the pass-through process's CPU (user + system, from /proc), per chunk
its client read: what relaying a pod's tokens costs the gateway's process, the part of its
CPU that grows with the tokens served rather than with the requests.
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import uvloop
from modelkube_native import UpstreamClient

from bench.gateway.latency import start_floor
from bench.native.relay import HEADERS, PATH, RUNTIME_ARGS, STREAMS, stream_body
from tests.serving.runtime_process import RuntimeProcess

TOKENS = 192
BODY = stream_body(TOKENS)
SERVERS = ("uvicorn", "front")


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _read_all(url: str) -> int:
    """Chunks read, every stream at once, through the pass-through at `url`."""
    client = UpstreamClient(url, max_retries=0, breaker_failures=0)

    async def one() -> int:
        stream = await client.astream("POST", PATH, BODY, HEADERS)
        if stream.status != 200:
            raise RuntimeError(f"{url} answered {stream.status}")
        return sum([1 async for _ in stream])

    return sum(await asyncio.gather(*(one() for _ in range(STREAMS))))


def _round(proc: subprocess.Popen[bytes], url: str) -> tuple[float, int]:
    uvloop.run(_read_all(url))  # the pass-through's connections opened and warm
    before = cpu_seconds(proc.pid)
    chunks = uvloop.run(_read_all(url))
    return cpu_seconds(proc.pid) - before, chunks


def run(rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        runtime = RuntimeProcess(RUNTIME_ARGS, logs / "runtime.log").start(timeout=300)
        upstream = runtime.url.removeprefix("http://")
        floors = {s: start_floor(upstream, logs, server=s, relay="stream") for s in SERVERS}
        try:
            per_chunk: dict[str, list[float]] = {s: [] for s in SERVERS}
            for i in range(rounds):
                for server in SERVERS if i % 2 == 0 else SERVERS[::-1]:
                    cpu, chunks = _round(*floors[server])
                    per_chunk[server].append(cpu / chunks * 1e6)
        finally:
            for proc, _ in floors.values():
                proc.terminate()
                proc.wait(30)
            runtime.stop()
    uvicorn_us = statistics.median(per_chunk["uvicorn"])
    front_us = statistics.median(per_chunk["front"])
    return {
        "streams": STREAMS,
        "tokens_per_stream": TOKENS,
        "uvicorn_us_per_chunk": uvicorn_us,
        "front_us_per_chunk": front_us,
        "ratio": front_us / uvicorn_us,
        "rounds": per_chunk,
    }


def table(row: dict[str, Any]) -> str:
    return (
        f"relay CPU per chunk, {row['streams']} streams x {row['tokens_per_stream']} tokens "
        "| uvicorn us | HttpFront us | front/uvicorn\n"
        f"{'-' * 48}+------------+--------------+--------------\n"
        f"{'a bare streamed pass-through, the process CPU':<48}| "
        f"{row['uvicorn_us_per_chunk']:10.1f} | {row['front_us_per_chunk']:12.1f} | "
        f"{row['ratio']:12.2f}x"
    )


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.gateway.relay_cpu", description=__doc__)
    p.add_argument("--rounds", type=int, default=4)
    print(table(run(p.parse_args().rounds)))


if __name__ == "__main__":
    main()
