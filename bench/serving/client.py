"""One streaming chat completion, and a closed-loop load of N requests over C clients."""

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.serving.prompts import chat_body, messages_for


@dataclass
class RequestResult:
    ok: bool = False
    index: int = -1  # the prompt's index
    sent_s: float = 0.0  # when the request left, from the start of its load run
    ttft_s: float | None = None
    e2e_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    usage_seen: bool = False
    finish_reason: str | None = None
    content: str = ""
    error: str | None = None


@dataclass
class LoadRun:
    concurrency: int
    first: int  # prompt index of the first request
    wall_s: float
    results: list[RequestResult] = field(default_factory=list)


def _apply_chunk(chunk: dict[str, Any], result: RequestResult, start: float) -> None:
    usage = chunk.get("usage")
    if usage:
        result.usage_seen = True
        result.prompt_tokens = int(usage.get("prompt_tokens", 0))
        result.completion_tokens = int(usage.get("completion_tokens", 0))
        details = usage.get("prompt_tokens_details") or {}
        result.cached_tokens = int(details.get("cached_tokens") or 0)
    for choice in chunk.get("choices") or []:
        text = (choice.get("delta") or {}).get("content") or ""
        if text and result.ttft_s is None:
            result.ttft_s = time.perf_counter() - start
        result.content += text
        result.finish_reason = choice.get("finish_reason") or result.finish_reason


async def _consume(response: httpx.Response, result: RequestResult, start: float) -> bool:
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return True
        _apply_chunk(json.loads(payload), result, start)
    return False


async def stream_chat(
    client: httpx.AsyncClient,
    body: dict[str, Any],
    timeout_s: float,
    index: int = -1,
    origin: float | None = None,
) -> RequestResult:
    """Never raises: any failure comes back as a result with `error` set. `origin` (a
    perf_counter time) is what `sent_s` counts from: the start of the load run."""
    start = time.perf_counter()
    result = RequestResult(index=index, sent_s=start - (start if origin is None else origin))
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    text = (await response.aread()).decode(errors="replace")
                    result.error = f"HTTP {response.status_code}: {text[:200]}"
                    return result
                done = await _consume(response, result, start)
    except Exception as exc:  # every failure is an error count, never a crash
        result.error = describe(exc)
        return result
    result.e2e_s = time.perf_counter() - start
    if not done:
        result.error = "stream ended without [DONE]"
    elif not result.usage_seen:
        result.error = "no usage in the final chunk"
    result.ok = result.error is None
    return result


def describe(exc: BaseException) -> str:
    """The exception and its causes, e.g. "ReadError <- ConnectionResetError: [Errno 104] ..."."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 4:
        text = str(current)
        parts.append(f"{type(current).__name__}: {text}" if text else type(current).__name__)
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)[:300]


def make_client(base_url: str, connections: int, timeout_s: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=httpx.Timeout(timeout_s))


async def run_load(
    base_url: str,
    model: str,
    concurrency: int,
    requests: int,
    first: int,
    max_tokens: int,
    timeout_s: float,
) -> LoadRun:
    """`concurrency` clients, each sending the next request as soon as its last one ends.

    The requests use prompts `first` .. `first + requests - 1`.
    """
    pending = list(range(first, first + requests))
    results: list[RequestResult] = []
    start = 0.0

    async def worker(client: httpx.AsyncClient) -> None:
        while pending:
            index = pending.pop(0)
            body = chat_body(model, messages_for(index), max_tokens)
            results.append(await stream_chat(client, body, timeout_s, index, start))

    async with make_client(base_url, concurrency, timeout_s) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return LoadRun(concurrency=concurrency, first=first, wall_s=wall, results=results)
