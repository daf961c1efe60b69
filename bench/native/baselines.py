"""The pure-Python equivalents the native core replaced. They live here, in the benchmark only.

`PythonOutputPath` is the runtime's output path before the native core: mlx-lm's streaming
detokenizer, stop strings matched in Python, and `json.dumps` per SSE chunk.
"""

import heapq
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StopMatch:
    emit: str
    stopped: bool


def match_stops(pending: str, stops: tuple[str, ...], final: bool) -> StopMatch:
    """Split `pending` into what may be emitted now, and whether a stop string ended it."""
    if not stops:
        return StopMatch(pending, False)
    hits = [i for i in (pending.find(s) for s in stops) if i >= 0]
    if hits:
        return StopMatch(pending[: min(hits)], True)
    if final:
        return StopMatch(pending, False)
    hold = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(pending)), 0, -1):
            if pending.endswith(stop[:n]):
                hold = max(hold, n)
                break
    return StopMatch(pending[: len(pending) - hold], False)


@dataclass
class _Request:
    detokenizer: Any
    stops: tuple[str, ...]
    rid: str
    emitted_chars: int = 0
    frames: list[bytes] = field(default_factory=list)


class PythonOutputPath:
    """One request at a time, as the engine thread did it per response of a step."""

    def __init__(self, tokenizer: Any, model: str) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.requests: dict[int, _Request] = {}

    def add(self, handle: int, rid: str, stops: tuple[str, ...]) -> None:
        detok = self.tokenizer.detokenizer  # mlx-lm hands out a fresh one per access
        detok.reset()
        self.requests[handle] = _Request(detok, stops, rid)

    def step(self, inputs: list[tuple[int, int | None, str | None]]) -> list[bytes]:
        frames: list[bytes] = []
        for handle, token, finish in inputs:
            req = self.requests[handle]
            if token is not None:
                req.detokenizer.add_token(token)
            if finish is not None:
                req.detokenizer.finalize()
            text: str = req.detokenizer.text
            match = match_stops(text[req.emitted_chars :], req.stops, finish is not None)
            req.emitted_chars += len(match.emit)
            if match.emit:
                chunk = _chat_chunk(req.rid, self.model, {"content": match.emit}, None)
                frames.append(_sse_frame(chunk))
            if finish is not None or match.stopped:
                chunk = _chat_chunk(req.rid, self.model, {}, finish or "stop")
                frames.append(_sse_frame(chunk))
                del self.requests[handle]
        return frames


def _chat_chunk(rid: str, model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


class PythonScheduler:
    """The native scheduler's semantics in Python: priorities, deficit round robin over keys
    by token cost, deadlines and cancellation (rate limits off, as in the benchmark)."""

    def __init__(self, max_running: int, max_queued: int, quantum: int = 512) -> None:
        self.max_running = max_running
        self.max_queued = max_queued
        self.quantum = quantum
        self.running = 0
        self._cost: dict[int, int] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._levels: dict[int, tuple[dict[str, deque[int]], deque[str], dict[str, int]]] = {}

    @property
    def queued(self) -> int:
        return len(self._cost)

    def submit(
        self, ticket: int, key: str, priority: int, cost: int, deadline: float, now: float
    ) -> bool:
        free = self.running < self.max_running and not self._cost
        if not free and len(self._cost) >= self.max_queued:
            raise RuntimeError("queue full")
        if free:
            self.running += 1
            return True
        queues, turn, _ = self._levels.setdefault(priority, ({}, deque(), {}))
        queue = queues.setdefault(key, deque())
        if not queue and key not in turn:
            turn.append(key)
        queue.append(ticket)
        self._cost[ticket] = max(cost, 1)
        heapq.heappush(self._deadlines, (deadline, ticket))
        return False

    def cancel(self, ticket: int) -> bool:
        return self._cost.pop(ticket, None) is not None

    def release(self, now: float) -> tuple[int | None, list[int]]:
        expired = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, ticket = heapq.heappop(self._deadlines)
            if self.cancel(ticket):
                expired.append(ticket)
        nxt = self._pop()
        if nxt is None:
            self.running -= 1
        return nxt, expired

    def _pop(self) -> int | None:
        for priority in sorted(self._levels):
            queues, turn, deficit = self._levels[priority]
            while turn:
                key = turn[0]
                queue = queues[key]
                while queue and queue[0] not in self._cost:
                    queue.popleft()
                if not queue:
                    del queues[key]
                    deficit.pop(key, None)
                    turn.popleft()
                    continue
                head = queue[0]
                if deficit.get(key, 0) >= self._cost[head]:
                    deficit[key] -= self._cost[head]
                    queue.popleft()
                    self.cancel(head)
                    return head
                deficit[key] = deficit.get(key, 0) + self.quantum
                turn.rotate(-1)
            del self._levels[priority]
        return None


def _sse_frame(payload: dict[str, Any]) -> bytes:
    """The pure-Python SSE framing the native renderer replaced."""
    return (
        b"data: "
        + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        + b"\n\n"
    )
