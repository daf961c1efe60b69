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


# The properties OpenAI's OpenAPI document lists as `required` (a nullable one must still be
# there, as null): the SDK's types default them to None, so validating alone misses a gap.
_REQUIRED: dict[str, dict[str, set[str]]] = {
    "chat.completion": {
        "": {"id", "object", "created", "model", "choices"},
        "choice": {"index", "message", "logprobs", "finish_reason"},
        "message": {"role", "content", "refusal"},
        "logprobs": {"content", "refusal"},
        "token": {"token", "logprob", "bytes", "top_logprobs"},
    },
    "chat.completion.chunk": {
        "": {"id", "object", "created", "model", "choices"},
        "choice": {"index", "delta", "finish_reason"},
        "logprobs": {"content", "refusal"},
        "token": {"token", "logprob", "bytes", "top_logprobs"},
    },
    "text_completion": {
        "": {"id", "object", "created", "model", "choices"},
        "choice": {"index", "text", "logprobs", "finish_reason"},
    },
}
_USAGE = {"prompt_tokens", "completion_tokens", "total_tokens"}


def assert_required_fields(payload: dict[str, Any], kind: str) -> None:
    """Every property OpenAI's schema requires is present in a response or chunk of `kind`."""
    required = _REQUIRED[kind]

    def has(obj: dict[str, Any], part: str, where: str) -> None:
        missing = required.get(part, set()) - obj.keys()
        assert not missing, f"{where} lacks {sorted(missing)}: {obj}"

    has(payload, "", kind)
    assert payload["object"] == kind, payload
    if payload.get("usage") is not None:
        assert not _USAGE - payload["usage"].keys(), payload["usage"]
    for choice in payload["choices"]:
        has(choice, "choice", "choice")
        if "message" in choice:
            has(choice["message"], "message", "message")
        logprobs = choice.get("logprobs")
        if logprobs is not None and "content" in required.get("logprobs", set()):
            has(logprobs, "logprobs", "logprobs")
            for token in logprobs["content"] or []:
                has(token, "token", "logprob entry")
