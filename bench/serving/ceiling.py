"""The long-lived ceiling_worker subprocess (OpenBLAS preloaded), driven one command at a time."""

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.serving.servers import LOG_DIR, blas_env

READY_TIMEOUT_S = 300.0
ROUND_TIMEOUT_S = 600.0
REPO_ROOT = Path(__file__).resolve().parents[2]


class CeilingWorker:
    """One worker process with its model loaded; `measure` runs one round of one level."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self._proc = proc
        self._log = log
        self.blas = "?"

    async def read(self, timeout_s: float) -> dict[str, Any]:
        """The next reply line; RuntimeError if the worker died, timed out or replied an error."""
        assert self._proc.stdout is not None
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), timeout_s)
        except TimeoutError:
            raise RuntimeError(f"ceiling worker silent for {timeout_s:.0f}s") from None
        if not line:
            code = await self._proc.wait()
            raise RuntimeError(f"ceiling worker exited with {code}; see {self._log}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"ceiling worker: {reply['error']}")
        return reply

    async def measure(
        self, concurrency: int, requests: int, first: int, max_tokens: int
    ) -> dict[str, Any]:
        assert self._proc.stdin is not None
        command = {
            "concurrency": concurrency, "requests": requests,
            "first": first, "max_tokens": max_tokens,
        }  # fmt: skip
        self._proc.stdin.write((json.dumps(command) + "\n").encode())
        await self._proc.stdin.drain()
        return await self.read(ROUND_TIMEOUT_S)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    if proc.stdin is not None:
        proc.stdin.close()  # end of input: the worker exits by itself
    try:
        await asyncio.wait_for(proc.wait(), 20)
    except TimeoutError:
        proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def running_ceiling(
    model: str, path: Path, kind: str = "ceiling"
) -> AsyncIterator[CeilingWorker]:
    """A loaded, warmed-up worker for `path` (`kind`: the module bench.serving.<kind>_worker,
    e.g. "overhead" for the bare llama.cpp loop); the process is always stopped on exit."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{kind}-{model}.log"
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"bench.serving.{kind}_worker", str(path),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=sink,
            env=blas_env(), cwd=REPO_ROOT,
        )  # fmt: skip
        try:
            worker = CeilingWorker(proc, log)
            worker.blas = str((await worker.read(READY_TIMEOUT_S))["blas"])
            yield worker
        finally:
            await _stop(proc)
