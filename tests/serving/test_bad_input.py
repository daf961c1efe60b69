"""Bad input gets an OpenAI error body with the right status, and never crashes the server."""

from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.serving.conftest import MODEL
from tests.serving.runtime_process import RuntimeProcess

MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
LONG = "word " * 5000

# (endpoint, body, status, error code or None, a fragment the message must contain, param)
CASES: list[tuple[str, Any, int, str | None, str, str | None]] = [
    ("chat", b"{not json", 400, None, "not valid JSON", None),
    ("chat", [1, 2], 400, None, "Invalid value", None),
    ("chat", {"messages": MSG}, 400, None, "Missing required parameter: 'model'", "model"),
    ("chat", {"model": MODEL}, 400, None, "Missing required parameter: 'messages'", "messages"),
    ("chat", {"model": MODEL, "messages": []}, 400, None, "at least 1", "messages"),
    (
        "chat",
        {"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]},
        400,
        None,
        "role",
        "messages.0.role",
    ),
    (
        "chat",
        {"model": MODEL, "messages": [{"role": "user", "content": 5}]},
        400,
        None,
        "Invalid value",
        "messages.0.content",
    ),
    (
        "chat",
        {"model": MODEL, "messages": [{"role": "user"}]},
        400,
        None,
        "content is required",
        "messages.0",
    ),
    (
        "chat",
        {"model": MODEL, "messages": MSG, "max_tokens": 0},
        400,
        None,
        "greater than or equal to 1",
        "max_tokens",
    ),
    (
        "chat",
        {"model": MODEL, "messages": MSG, "max_tokens": -3},
        400,
        None,
        "greater than or equal to 1",
        "max_tokens",
    ),
    (
        "chat",
        {"model": MODEL, "messages": MSG, "max_tokens": "ten"},
        400,
        None,
        "integer",
        "max_tokens",
    ),
    (
        "chat",
        {"model": MODEL, "messages": MSG, "temperature": 2.5},
        400,
        None,
        "less than or equal to 2",
        "temperature",
    ),
    (
        "chat",
        {"model": MODEL, "messages": MSG, "temperature": -1},
        400,
        None,
        "greater than or equal to 0",
        "temperature",
    ),
    ("chat", {"model": MODEL, "messages": MSG, "top_p": 0}, 400, None, "greater than 0", "top_p"),
    (
        "chat",
        {"model": MODEL, "messages": MSG, "frobnicate": True},
        400,
        None,
        "Unrecognized request argument supplied: frobnicate",
        "frobnicate",
    ),
    ("chat", {"model": MODEL, "messages": MSG, "n": 2}, 400, None, "less than or equal to 1", "n"),
    (
        "chat",
        {"model": MODEL, "messages": MSG, "stop": ["a", "b", "c", "d", "e"]},
        400,
        None,
        "at most 4",
        "stop",
    ),
    (
        "chat",
        {"model": MODEL, "messages": MSG, "top_logprobs": 2},
        400,
        None,
        "requires logprobs",
        None,
    ),
    (
        "chat",
        {"model": MODEL, "messages": MSG, "tools": [{"type": "function"}]},
        400,
        None,
        "tools are not supported",
        None,
    ),
    (
        "chat",
        {"model": MODEL, "messages": MSG, "stream_options": {"include_usage": True}},
        400,
        None,
        "only allowed when stream",
        None,
    ),
    (
        "chat",
        {"model": "gpt-5", "messages": MSG},
        404,
        "model_not_found",
        "`gpt-5` does not exist",
        "model",
    ),
    (
        "chat",
        {"model": MODEL, "messages": [{"role": "user", "content": LONG}]},
        400,
        "context_length_exceeded",
        "maximum context length is 2048",
        "messages",
    ),
    (
        "chat",
        {"model": MODEL, "messages": MSG, "max_tokens": 4000},
        400,
        "context_length_exceeded",
        "plus 4000 completion tokens",
        "messages",
    ),
    ("completions", {"model": MODEL, "prompt": ""}, 400, None, "at least 1", "prompt"),
    (
        "completions",
        {"model": MODEL, "prompt": "x", "logprobs": 6},
        400,
        None,
        "less than or equal to 5",
        "logprobs",
    ),
    ("completions", {"model": MODEL, "prompt": ["a", "b"]}, 400, None, "only one prompt", None),
    (
        "completions",
        {"model": MODEL, "prompt": "x", "echo": True},
        400,
        None,
        "echo and suffix",
        None,
    ),
    (
        "completions",
        {"model": MODEL, "prompt": [99999]},
        400,
        None,
        "must be in [0, 1024)",
        "prompt",
    ),
    ("completions", {"model": MODEL, "prompt": [3, -1]}, 400, None, "token ids must be", "prompt"),
]


@pytest.mark.parametrize(("endpoint", "body", "status", "code", "fragment", "param"), CASES)
def test_bad_request_gets_openai_error_body(
    runtime: RuntimeProcess,
    endpoint: str,
    body: Any,
    status: int,
    code: str | None,
    fragment: str,
    param: str | None,
) -> None:
    url = f"{runtime.url}/v1/{'chat/completions' if endpoint == 'chat' else 'completions'}"
    if isinstance(body, bytes):
        response = httpx.post(url, content=body, headers={"content-type": "application/json"})
    else:
        response = httpx.post(url, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == ("invalid_request_error")
    assert fragment in error["message"]
    assert error["code"] == code
    if param is not None:
        assert error["param"] == param


def test_unknown_route_and_wrong_method(runtime: RuntimeProcess) -> None:
    missing = httpx.get(f"{runtime.url}/v1/nothing-here")
    assert missing.status_code == 404 and "No route" in missing.json()["error"]["message"]
    wrong = httpx.get(f"{runtime.url}/v1/chat/completions")
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"


def test_oversized_body_is_refused_with_413(runtime: RuntimeProcess) -> None:
    big = b'{"model": "tiny", "prompt": "' + b"x" * (9 << 20) + b'"}'
    response = httpx.post(
        f"{runtime.url}/v1/completions", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_sdk_raises_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=MSG)
    with pytest.raises(openai.BadRequestError, match="context length"):
        client.completions.create(model=MODEL, prompt=LONG)


def test_server_survives_the_bad_input(runtime: RuntimeProcess, client: openai.OpenAI) -> None:
    for _endpoint, body, *_ in CASES:
        httpx.post(
            f"{runtime.url}/v1/chat/completions", json=body if not isinstance(body, bytes) else None
        )
    assert httpx.get(f"{runtime.url}/healthz").status_code == 200
    assert client.completions.create(model=MODEL, prompt="still alive", max_tokens=2).choices
