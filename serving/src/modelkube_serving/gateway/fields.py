"""The few fields of a request the gateway acts on, read from the parsed body without pydantic.

The gateway forwards the body as it came, and the pod validates all of it with the envelope
every mode shares, so the gateway needs only `model` (where to go), `stream`, the token limit
and `priority` (admission). Validating the whole envelope here cost a pydantic pass over every
message of every request (issue 19, the added latency). A body whose fields are plainly well
formed is read here; any other goes through the envelope, whose 400 names the field.
"""

from dataclasses import dataclass
from typing import Any

PRIORITY_RANGE = range(-1000, 1001)  # the envelope's bounds on `priority`


@dataclass(frozen=True)
class Fields:
    model: str
    stream: bool
    token_limit: int | None  # max_completion_tokens or max_tokens
    priority: int


def plain_fields(endpoint: str, body: dict[str, Any]) -> Fields | None:
    """The fields when each is present with the type and range the envelope allows (or
    absent); None when any is not, or the body lacks what its endpoint needs."""
    model = body.get("model")
    stream = body.get("stream", False)
    priority = body.get("priority", 0)
    if not (type(model) is str and model and type(stream) is bool):
        return None
    if not (type(priority) is int and priority in PRIORITY_RANGE):
        return None
    limits = ("max_completion_tokens", "max_tokens") if endpoint == "chat" else ("max_tokens",)
    found = [body.get(name) for name in limits if name in body]
    if not all(type(value) is int and value >= 1 for value in found):
        return None
    if not _has_input(endpoint, body):
        return None
    return Fields(model, stream, found[0] if found else None, priority)


def _has_input(endpoint: str, body: dict[str, Any]) -> bool:
    if endpoint == "chat":
        messages = body.get("messages")
        return type(messages) is list and len(messages) > 0
    return type(body.get("prompt")) in (str, list)
