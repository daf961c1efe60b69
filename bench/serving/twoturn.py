"""Two-turn chat: a ~1,000-token first turn, then the same conversation plus a short turn.

With a prefix cache the second turn only prefills the new tokens, so its TTFT should be
a small fraction of the first one's.
"""

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench.serving.client import RequestResult, make_client, stream_chat
from bench.serving.config import REQUEST_TIMEOUT_S
from bench.serving.prompts import chat_body, long_text
from bench.serving.servers import Server

FIRST_TURN_TOKENS = 1000
FIRST_TURN_MAX_TOKENS = 16
FOLLOW_UP = "Thanks. Now summarise that in one sentence."
TRIALS = 3


@dataclass
class Trial:
    first_tokens: int
    turn1: RequestResult
    turn2: RequestResult


@dataclass
class TwoTurnResult:
    system: str
    ttft1_ms: float | None = None
    ttft2_ms: float | None = None
    ratio: float | None = None
    errors: int = 0
    trials: list[Trial] = field(default_factory=list)


def _median_ms(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) * 1000.0 if present else None


async def _trial(server: Server, model_path: Path, seed: int) -> Trial:
    text, count = long_text(model_path / "tokenizer.json", FIRST_TURN_TOKENS, seed)
    first = [{"role": "user", "content": text}]
    async with make_client(server.base_url, 1, REQUEST_TIMEOUT_S) as client:
        body = chat_body(server.model, first, FIRST_TURN_MAX_TOKENS)
        turn1 = await stream_chat(client, body, REQUEST_TIMEOUT_S)
        second = [
            *first,
            {"role": "assistant", "content": turn1.content},
            {"role": "user", "content": FOLLOW_UP},
        ]
        body = chat_body(server.model, second, FIRST_TURN_MAX_TOKENS)
        turn2 = await stream_chat(client, body, REQUEST_TIMEOUT_S)
    return Trial(first_tokens=count, turn1=turn1, turn2=turn2)


async def two_turn(server: Server, model_path: Path, trials_n: int = TRIALS) -> TwoTurnResult:
    """Median over `trials_n` conversations, each with a fresh first-turn text; turn 1's TTFT
    is the TTFT of a ~1,000-token prefill. `model_path`: a directory with tokenizer.json."""
    trials = [await _trial(server, model_path, seed=1000 + i) for i in range(trials_n)]
    good = [t for t in trials if t.turn1.ok and t.turn2.ok]
    result = TwoTurnResult(system=server.system, trials=trials, errors=len(trials) - len(good))
    result.ttft1_ms = _median_ms([t.turn1.ttft_s for t in good])
    result.ttft2_ms = _median_ms([t.turn2.ttft_s for t in good])
    if result.ttft1_ms and result.ttft2_ms is not None:
        result.ratio = result.ttft2_ms / result.ttft1_ms
    return result
