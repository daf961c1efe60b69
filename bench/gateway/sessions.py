"""The workload: multi-turn chat sessions sharing a long system prompt, each turn streamed,
timed to its first token, with the server's own count of cached prompt tokens."""

import asyncio
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

WORDS = [
    "alpha", "beta", "gamma", "delta", "kappa", "sigma", "omega",
    "river", "stone", "cloud", "field", "light", "north",
]  # fmt: skip


@dataclass(frozen=True)
class Turn:
    session: int
    turn: int  # 1-based
    ttft_s: float
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int


Think = Callable[[int, int], float]  # (session, turn) -> seconds before that turn is sent


def no_think(_session: int, _turn: int) -> float:
    return 0.0


def reader(mean_s: float) -> Think:
    """A chat user's pause before each later turn (reading the answer, typing the next):
    exponential around `mean_s`, capped at 3x so one draw does not set the run's length,
    and drawn from the session and turn alone, so both modes wait the same pauses."""

    def think(session: int, turn: int) -> float:
        draw = random.Random(f"think {session} {turn}").expovariate(1 / mean_s)
        return min(draw, 3 * mean_s) if turn > 1 else 0.0

    return think


def system_prompt(seed: int, words: int) -> str:
    rng = random.Random(seed)
    return "You are a helpful assistant. " + " ".join(rng.choice(WORDS) for _ in range(words))


async def run_sessions(
    pick_url: Callable[[], str],
    system: str,
    sessions: range,
    turns: int,
    concurrency: int,
    max_tokens: int,
    think: Think = no_think,
) -> tuple[list[Turn], float]:
    """Every session's turns in order, `concurrency` sessions at a time, each turn sent
    `think` seconds after the previous answer ended (at once by default: closed loop); the
    turns and the wall time. A session's number is in its messages, so numbers must not
    repeat in a run."""
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:

        async def session(number: int) -> list[Turn]:
            async with gate:
                return await _session(http, pick_url, system, number, turns, max_tokens, think)

        started = time.perf_counter()
        done = await asyncio.gather(*(session(i) for i in sessions))
        wall = time.perf_counter() - started
    return [turn for turns_of in done for turn in turns_of], wall


async def shared_tokens(urls: list[str], system: str) -> int:
    """The most cached tokens a new session's first turn finds on any of `urls`: the part of
    the prompt every session shares, once the replicas cached it."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Session -"}]
    async with httpx.AsyncClient(timeout=300) as http:
        found = [(await _turn(http, url, messages, 1))[1][2] for url in urls]
    return max(found)


async def idle_ttft(urls: list[str], system: str, turns: int) -> tuple[float, float]:
    """The TTFT p50 of a last turn sent alone to an idle replica: first with none of its
    conversation cached (the shared prefix only), then again with all of it cached. With
    nothing else running, this is prefill and the first step alone: what a loaded run takes
    beyond it is queueing behind the other sessions."""
    messages = [{"role": "system", "content": system}]
    for turn in range(1, turns):
        messages.append({"role": "user", "content": f"Session idle, question {turn}: why?"})
        messages.append({"role": "assistant", "content": " ".join(WORDS[:16])})
    messages.append({"role": "user", "content": f"Session idle, question {turns}: why?"})
    cold, warm = [], []
    async with httpx.AsyncClient(timeout=300) as http:
        for url in urls:
            cold.append((await _turn(http, url, messages, 1))[1][0])
            warm.append((await _turn(http, url, messages, 1))[1][0])
    return statistics.median(cold), statistics.median(warm)


async def _session(
    http: httpx.AsyncClient,
    pick_url: Callable[[], str],
    system: str,
    number: int,
    turns: int,
    max_tokens: int,
    think: Think,
) -> list[Turn]:
    messages = [{"role": "system", "content": system}]
    found = []
    for turn in range(1, turns + 1):
        await asyncio.sleep(think(number, turn))
        messages.append({"role": "user", "content": f"Session {number}, question {turn}: why?"})
        text, result = await _turn(http, pick_url(), messages, max_tokens)
        found.append(Turn(number, turn, *result))
        messages.append({"role": "assistant", "content": text})
    return found


async def _turn(
    http: httpx.AsyncClient, url: str, messages: list[dict[str, str]], max_tokens: int
) -> tuple[str, tuple[float, int, int, int]]:
    body = {
        "model": "chat",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    ttft = None
    text = []
    usage: dict[str, object] = {}
    async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            for choice in event.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    ttft = ttft if ttft is not None else time.perf_counter() - started
                    text.append(content)
            usage = event.get("usage") or usage
    details = usage.get("prompt_tokens_details") or {}
    assert isinstance(details, dict)
    return "".join(text), (
        ttft if ttft is not None else time.perf_counter() - started,
        int(str(usage.get("prompt_tokens", 0))),
        int(details.get("cached_tokens", 0) or 0),
        int(str(usage.get("completion_tokens", 0))),
    )
