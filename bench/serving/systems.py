"""The systems under test behind one interface: measure one round of a level, then report
every level over its rounds."""

import dataclasses
from typing import Any, Protocol

from bench.serving.ceiling import CeilingWorker
from bench.serving.client import LoadRun, run_load
from bench.serving.config import REQUEST_TIMEOUT_S, Level
from bench.serving.servers import Server
from bench.serving.stats import summarise_ceiling, summarise_level, summarise_round


class System(Protocol):
    name: str

    async def measure(self, level: Level, first: int) -> float | None:
        """Run one round of `level` on prompts from `first`; its tok/s, None if it failed."""
        ...

    def result(self) -> dict[str, Any]:
        """Everything measured so far: `info` plus "levels", each with its rounds."""
        ...


class HttpSystem:
    """A running HTTP server, loaded by closed-loop streaming clients."""

    def __init__(self, server: Server, max_tokens: int) -> None:
        self.name = server.system
        self.server = server
        self.info: dict[str, Any] = {"blas": server.blas()}
        self._max_tokens = max_tokens
        self._runs: dict[int, list[LoadRun]] = {}

    async def measure(self, level: Level, first: int) -> float | None:
        run = await run_load(
            self.server.base_url, self.server.model, level.concurrency, level.requests,
            first, self._max_tokens, REQUEST_TIMEOUT_S,
        )  # fmt: skip
        self._runs.setdefault(level.concurrency, []).append(run)
        return summarise_round(run).tok_per_s

    def result(self) -> dict[str, Any]:
        levels = [summarise_level(runs, self._max_tokens) for runs in self._runs.values()]
        return {**self.info, "levels": [dataclasses.asdict(level) for level in levels]}


class CeilingSystem:
    """mlx-lm's batch_generate in the ceiling worker; after a failure it measures nothing."""

    name = "ceiling"

    def __init__(self, worker: CeilingWorker, max_tokens: int) -> None:
        self.info: dict[str, Any] = {"blas": worker.blas}
        self._worker = worker
        self._max_tokens = max_tokens
        self._rounds: dict[int, list[dict[str, Any]]] = {}

    async def measure(self, level: Level, first: int) -> float | None:
        if "error" in self.info:
            return None
        try:
            raw = await self._worker.measure(
                level.concurrency, level.requests, first, self._max_tokens
            )
        except RuntimeError as exc:
            self.info["error"] = str(exc)
            return None
        self._rounds.setdefault(level.concurrency, []).append(raw)
        return float(raw["tok_per_s"])

    def result(self) -> dict[str, Any]:
        levels = [summarise_ceiling(c, rounds) for c, rounds in self._rounds.items()]
        return {**self.info, "levels": levels}
