"""The gateway's plain reading of a body agrees with the envelope every mode validates, and
gives up (so the envelope's 400 answers) on anything the envelope would refuse."""

from typing import Any

import pytest

from modelkube_serving.gateway.fields import Fields, plain_fields
from modelkube_serving.protocol import ChatEnvelope, CompletionEnvelope

CHAT: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, Fields("chat", False, None, 0)),
        ({"stream": True, "priority": -3}, Fields("chat", True, None, -3)),
        ({"max_tokens": 7}, Fields("chat", False, 7, 0)),
        ({"max_tokens": 7, "max_completion_tokens": 5}, Fields("chat", False, 5, 0)),
    ],
)
def test_a_plain_chat_body_reads_as_the_envelope_does(
    extra: dict[str, Any], expected: Fields
) -> None:
    body = {**CHAT, **extra}
    envelope = ChatEnvelope.model_validate(body)
    assert plain_fields("chat", body) == expected
    assert (envelope.model, envelope.stream, envelope.token_limit(), envelope.priority) == (
        expected.model,
        expected.stream,
        expected.token_limit,
        expected.priority,
    )


def test_a_plain_completion_body_reads_as_the_envelope_does() -> None:
    body = {"model": "m:a", "prompt": ["x"], "max_tokens": 3, "stream": True}
    envelope = CompletionEnvelope.model_validate(body)
    assert plain_fields("completions", body) == Fields("m:a", True, 3, 0)
    assert (envelope.model, envelope.max_tokens, envelope.stream) == ("m:a", 3, True)


@pytest.mark.parametrize(
    "extra",
    [
        {"model": ""},
        {"model": 3},
        {"stream": "yes"},
        {"stream": 1},
        {"priority": 1001},
        {"priority": True},
        {"max_tokens": 0},
        {"max_tokens": 1.5},
        {"max_completion_tokens": False},
        {"messages": []},
        {"messages": "hi"},
        {"stream": None},  # a null means the default: the envelope reads that
    ],
)
def test_anything_else_is_left_to_the_envelope(extra: dict[str, Any]) -> None:
    assert plain_fields("chat", {**CHAT, **extra}) is None


def test_a_completion_without_a_prompt_is_left_to_the_envelope() -> None:
    assert plain_fields("completions", {"model": "m"}) is None
    assert plain_fields("chat", {"model": "m"}) is None
