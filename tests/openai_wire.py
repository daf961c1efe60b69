"""Streamed and whole completions parsed strictly with the official `openai` types.

The SDK itself builds its objects without validation; these helpers validate. One gap in the
types: `CompletionChoice.finish_reason` has no None, though the API streams `null` there until
the last chunk (the SDK uses the same type for chunks), so text chunks are checked with that one
field stood in for.
"""

import json
from typing import Any

from openai.types import Completion
from openai.types.chat import ChatCompletionChunk

DONE = "[DONE]"


def sse_payloads(raw: bytes) -> list[Any]:
    """Every `data:` frame of an SSE body, JSON-decoded; `[DONE]` stays the string."""
    frames = [f for f in raw.decode().split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames), frames
    payloads = [f.removeprefix("data: ") for f in frames]
    return [p if p == DONE else json.loads(p) for p in payloads]


def chat_chunks(payloads: list[Any]) -> list[ChatCompletionChunk]:
    """A chat stream's chunks, which must end with `[DONE]`."""
    assert payloads and payloads[-1] == DONE, payloads[-1:]
    return [ChatCompletionChunk.model_validate(p) for p in payloads[:-1]]


def text_chunks(payloads: list[Any]) -> list[Completion]:
    """A text completion stream's chunks, which must end with `[DONE]`."""
    assert payloads and payloads[-1] == DONE, payloads[-1:]
    return [text_chunk(p) for p in payloads[:-1]]


def text_chunk(payload: dict[str, Any]) -> Completion:
    choices = payload["choices"]
    if not choices or choices[0]["finish_reason"] is not None:
        return Completion.model_validate(payload)
    stand_in = {**payload, "choices": [{**choices[0], "finish_reason": "length"}]}
    chunk = Completion.model_validate(stand_in)
    chunk.choices[0].finish_reason = None  # type: ignore[assignment]
    return chunk
