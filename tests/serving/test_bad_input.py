"""Bad input gets an OpenAI error body with the right status, and never crashes the server."""

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from tests.serving.conftest import MODEL
from tests.serving.inprocess import InProcessRuntime

MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
LONG = "word " * 5000

# (endpoint, body, status, error code or None, a fragment the message must contain, param)
CASES: list[tuple[str, Any, int, str | None, str, str | None]] = [
    ("chat", b"{not json", 400, None, "not valid JSON", None),
    ("chat", [1, 2], 400, None, "must be a JSON object", None),
    ("chat", b"", 400, None, "The request body is empty", None),
    ("chat", b"   ", 400, None, "The request body is empty", None),
    (
        "chat",
        {"model": MODEL, "messages": MSG, "list": 1},
        400,
        None,
        "Unrecognized request argument supplied: list",
        "list",
    ),
    (
        "chat",
        {"model": MODEL, "messages": MSG, "int": 1},
        400,
        None,
        "Unrecognized request argument supplied: int",
        "int",
    ),
    (
        "chat",
        {"model": MODEL, "messages": MSG, "seed": 2**63},
        400,
        None,
        "less than or equal to 9223372036854775807",
        "seed",
    ),
    (
        "chat",
        {"model": MODEL, "messages": MSG, "seed": -(2**63) - 1},
        400,
        None,
        "greater than or equal to -9223372036854775808",
        "seed",
    ),
    (
        "chat",
        b'{"model": "tiny", "messages": [{"role": "user", "content": "a\\ud800b"}]}',
        400,
        None,
        "lone UTF-16 surrogate",
        "messages.0.content",
    ),
    (
        "chat",
        b'{"model": "\\udfff", "messages": [{"role": "user", "content": "hi"}]}',
        400,
        None,
        "lone UTF-16 surrogate",
        "model",
    ),
    (  # the key itself quoted back, escaped: a UTF-8 body cannot carry it (it was a 500)
        "chat",
        b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "\\ud800": 1}',
        400,
        None,
        "Invalid value at '\\ud800'",
        "\\ud800",
    ),
    ("chat", {"model": MODEL, "messages": MSG, "stop": ""}, 400, None, "must not be empty", "stop"),
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
    (
        "chat",
        {"model": MODEL, "messages": MSG, "n": 17},
        400,
        None,
        "less than or equal to 16",
        "n",
    ),
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
        "Missing required parameter",
        "tools.0.function",
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
    ("completions", {"model": MODEL, "prompt": [""]}, 400, None, "prompt is empty", "prompt"),
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
    runtime: InProcessRuntime,
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


def test_unknown_route_and_wrong_method(runtime: InProcessRuntime) -> None:
    missing = httpx.get(f"{runtime.url}/v1/nothing-here")
    assert missing.status_code == 404 and "No route" in missing.json()["error"]["message"]
    wrong = httpx.get(f"{runtime.url}/v1/chat/completions")
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/programs/"), ("POST", "/v1/chat/completions/"), ("GET", "/v1/programs/")],
)
def test_a_slash_too_many_is_a_404_not_a_redirect(
    runtime: InProcessRuntime, method: str, path: str
) -> None:
    """Starlette redirected these (307), which OpenAI's clients do not follow."""
    got = httpx.request(method, f"{runtime.url}{path}", json={"model": MODEL})
    assert got.status_code == 404, got.headers
    assert got.json()["error"]["type"] == "invalid_request_error"


def test_oversized_body_is_refused_with_413(runtime: InProcessRuntime) -> None:
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


def test_server_survives_the_bad_input(runtime: InProcessRuntime, client: openai.OpenAI) -> None:
    for _endpoint, body, *_ in CASES:
        httpx.post(
            f"{runtime.url}/v1/chat/completions", json=body if not isinstance(body, bytes) else None
        )
    assert httpx.get(f"{runtime.url}/healthz").status_code == 200
    assert client.completions.create(model=MODEL, prompt="still alive", max_tokens=2).choices


def test_chunked_oversized_body_is_cut_off_at_the_limit(runtime: InProcessRuntime) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count what it reads
        nonlocal sent
        yield b'{"model": "tiny", "prompt": "'
        for _ in range(64):
            sent += 256 << 10
            yield b"x" * (256 << 10)
        yield b'"}'

    response = httpx.post(
        f"{runtime.url}/v1/completions",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("seed", [-1, -9131396, -(2**63), 2**63 - 1, 0])
def test_any_int64_seed_is_served_and_the_engine_lives_on(
    any_runtime: InProcessRuntime, seed: int
) -> None:
    """On both engines, streamed and not, with several choices (each choice's seed is the
    request's plus its index): a negative seed hung the request on llama.cpp."""
    client = _client(any_runtime)
    texts = set()
    for stream in (False, True, False):  # the same seed, the same text
        chunks = client.completions.create(
            model=MODEL, prompt="seeded", max_tokens=4, temperature=1.0, seed=seed, n=2,
            stream=True,
        ) if stream else [client.completions.create(
            model=MODEL, prompt="seeded", max_tokens=4, temperature=1.0, seed=seed, n=2,
        )]  # fmt: skip
        texts.add("".join(c.text for chunk in chunks for c in chunk.choices if c.index == 0))
    assert len(texts) == 1, texts
    assert httpx.get(f"{any_runtime.url}/healthz").status_code == 200
    assert httpx.get(f"{any_runtime.url}/readyz").status_code == 200


def test_tiny_temperatures_are_greedy_not_nan(any_runtime: InProcessRuntime) -> None:
    client = _client(any_runtime)
    greedy = client.completions.create(model=MODEL, prompt="abc", max_tokens=6, temperature=0)
    tiny = client.completions.create(model=MODEL, prompt="abc", max_tokens=6, temperature=1e-300)
    assert tiny.choices[0].text == greedy.choices[0].text


@pytest.mark.parametrize("top_p", [8.58e-123, 1e-45, 5e-324])
def test_a_top_p_too_small_for_float32_keeps_the_top_token(
    any_runtime: InProcessRuntime, top_p: float
) -> None:
    """The API takes any top_p above 0; llama.cpp's float32 rounded these to 0 and refused
    them with a 500."""
    client = _client(any_runtime)
    reply = client.completions.create(
        model=MODEL, prompt="abc", max_tokens=4, temperature=1.0, top_p=top_p, seed=3
    )
    assert reply.choices[0].finish_reason in ("stop", "length")


def _client(runtime: InProcessRuntime) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{runtime.url}/v1", api_key="unused", max_retries=0)


def test_null_means_the_default_for_nullable_fields(runtime: InProcessRuntime) -> None:
    nulls = dict.fromkeys(
        (
            "temperature",
            "top_p",
            "n",
            "stream",
            "stop",
            "seed",
            "max_tokens",
            "presence_penalty",
            "frequency_penalty",
            "logit_bias",
            "user",
            "stream_options",
        )
    )
    chat = httpx.post(
        f"{runtime.url}/v1/chat/completions",
        json={
            **nulls,
            "model": MODEL,
            "messages": MSG,
            "logprobs": None,
            "top_logprobs": None,
            "max_completion_tokens": 5,  # max_tokens null: the context would be the limit
        },
        timeout=30,
    )
    assert chat.status_code == 200, chat.text
    ChatCompletion.model_validate(chat.json())
    text = httpx.post(
        f"{runtime.url}/v1/completions",
        json={**nulls, "model": MODEL, "prompt": "hi", "logprobs": None, "echo": None},
        timeout=30,
    )
    assert text.status_code == 200, text.text
    Completion.model_validate(text.json())


def test_openapi_documents_what_the_server_does(runtime: InProcessRuntime) -> None:
    doc = httpx.get(f"{runtime.url}/openapi.json").json()
    assert '"422"' not in json.dumps(doc["paths"])  # validation errors are 400s here
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    body = chat["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    name = body.rsplit("/", 1)[1]
    assert "messages" in doc["components"]["schemas"][name]["properties"]
    for status in ("400", "404", "413", "429"):
        error = chat["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert error.endswith("/ErrorResponse")
    assert "/v1/models/{model_id}" in doc["paths"]
    program = doc["paths"]["/v1/programs/{name}"]["post"]  # reads its body itself too
    assert program["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ProgramRequest"
    )
    assert "text/event-stream" not in program["responses"]["200"].get("content", {})
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain; version=0.0.4"]
    refs = {
        m.split("/")[-1] for m in re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc))
    }
    assert refs <= set(doc["components"]["schemas"]), refs - set(doc["components"]["schemas"])


def test_models_can_be_retrieved_one_by_one_and_created_holds(
    runtime: InProcessRuntime, client: openai.OpenAI
) -> None:
    listed = client.models.list().data
    assert client.models.retrieve(MODEL) == listed[0]
    assert client.models.list().data[0].created == listed[0].created
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
