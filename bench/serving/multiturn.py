"""Multi-turn chat: staggered sessions, 4 turns each, one long system prompt shared by all.

What a chat product sends: every conversation starts with the same long system prompt, users
arrive over time, and each comes back with a short turn. Sessions start STAGGER_S apart, so a
new session arrives while earlier ones are still talking: a server that shares a cached prefix
between sequences prefills only the new session's own tokens, one with per-slot caches prefills
the whole system prompt again, and the other sessions' turns wait behind that prefill. There are
fewer sessions than llama-server has slots, so its per-slot cache keeps each conversation.
"""

import asyncio
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench.serving.client import RequestResult, make_client, stream_chat
from bench.serving.config import REQUEST_TIMEOUT_S
from bench.serving.prompts import chat_body, long_text
from bench.serving.servers import Server

SYSTEM_TOKENS = 800
SESSIONS = 6
TURNS = 4
STAGGER_S = 2.0
MAX_TOKENS = 16


@dataclass
class MultiTurnResult:
    system: str
    sessions: int = SESSIONS
    turns: int = TURNS
    ttft_first_ms: float | None = None  # turn 1 of every session after the first
    ttft_later_ms: float | None = None  # turns 2..TURNS, every session
    ttft_later_p95_ms: float | None = None
    errors: int = 0
    cached_later: int = 0  # prompt tokens reported cached over turns 2..TURNS
    prompt_later: int = 0
    turns_ttft_s: list[list[float | None]] = field(default_factory=list)


def _question(session: int, turn: int) -> str:
    return f"Session {session}, question {turn}: what is the {turn}th word you remember?"


async def _session(
    server: Server, system_prompt: str, session: int, delay: float
) -> list[RequestResult]:
    await asyncio.sleep(delay)
    messages = [{"role": "system", "content": system_prompt}]
    results = []
    async with make_client(server.base_url, 1, REQUEST_TIMEOUT_S) as client:
        for turn in range(1, TURNS + 1):
            messages.append({"role": "user", "content": _question(session, turn)})
            body = chat_body(server.model, messages, MAX_TOKENS)
            result = await stream_chat(client, body, REQUEST_TIMEOUT_S)
            results.append(result)
            if not result.ok:
                break
            messages.append({"role": "assistant", "content": result.content})
    return results


def _ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if q == 0.5:
        return statistics.median(values) * 1000.0
    return statistics.quantiles(values, n=20, method="inclusive")[18] * 1000.0


async def multi_turn(server: Server, model_path: Path) -> MultiTurnResult:
    """`model_path`: a directory with tokenizer.json (to size the system prompt)."""
    system_prompt, _ = long_text(model_path / "tokenizer.json", SYSTEM_TOKENS, seed=4242)
    sessions = await asyncio.gather(
        *(_session(server, system_prompt, s, s * STAGGER_S) for s in range(SESSIONS))
    )
    result = MultiTurnResult(system=server.system)
    first: list[float] = []
    later: list[float] = []
    for index, turns in enumerate(sessions):
        result.errors += sum(1 for t in turns if not t.ok) + (TURNS - len(turns))
        result.turns_ttft_s.append([t.ttft_s for t in turns])
        for number, turn in enumerate(turns, start=1):
            if not turn.ok or turn.ttft_s is None:
                continue
            if number == 1:
                if index > 0:
                    first.append(turn.ttft_s)
            else:
                later.append(turn.ttft_s)
                result.cached_later += turn.cached_tokens
                result.prompt_later += turn.prompt_tokens
    result.ttft_first_ms = _ms(first, 0.5)
    result.ttft_later_ms = _ms(later, 0.5)
    result.ttft_later_p95_ms = _ms(later, 0.95)
    return result
