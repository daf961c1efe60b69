"""Generated requests against a real runtime: no 5xx, no hang, and the server fine afterwards.

Bodies come from three sources: every field of OpenAI's request schema with values from its
allowed ranges and just past them (so many reach the engine), the same with one field swapped
for any JSON value, and raw objects of known and unknown keys. Every answer is checked against
the official `openai` package's types, or against OpenAI's error body. The runs are derandomized
so CI sees the same examples every time; set MODELKUBE_FUZZ_EXAMPLES to explore further.
"""

import json
import os
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types import Completion, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.openai_wire import assert_required_fields
from tests.serving.conftest import ENGINE_ARGS, MODEL, StartRuntime
from tests.serving.inprocess import InProcessRuntime
from tests.waiting import wait_until

EXAMPLES = int(os.environ.get("MODELKUBE_FUZZ_EXAMPLES", "120"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="MODELKUBE_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
ERROR_STATUSES = {400, 404, 413, 429}
MAX_TOKENS = 4  # generation is not what is under test: keep each request short

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        # Keys with a lone surrogate too: an error quoting one back was a 500.
        | st.dictionaries(st.text(max_size=8) | st.just("\ud800"), inner, max_size=4)
    ),
    max_leaves=12,
)
# Text with what breaks tokenizers and JSON encoders: surrogates, NULs, specials, emoji.
texts = st.text(alphabet=st.characters(blacklist_categories=()), max_size=40) | st.sampled_from(
    ["", "<|endoftext|>", "\x00", "\ud800", "😀" * 5, "a\ud83d"]
)


def _shorten(body: dict[str, Any]) -> dict[str, Any]:
    """Short generations: an integer token limit above MAX_TOKENS is lowered to it."""
    for field in ("max_tokens", "max_completion_tokens"):
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_TOKENS:
            body[field] = MAX_TOKENS
    if "max_tokens" not in body and "max_completion_tokens" not in body:
        body["max_tokens"] = MAX_TOKENS
    return body


# What OpenAI's schema allows for the sampling fields, edges included.
SAMPLING: dict[str, st.SearchStrategy[Any]] = {
    "max_tokens": st.none() | st.integers(min_value=-2, max_value=2**70),
    "temperature": st.none() | st.floats(min_value=0, max_value=2) | st.just(1e-300),
    "top_p": st.none() | st.floats(min_value=0, max_value=1),
    "n": st.none() | st.integers(min_value=0, max_value=3) | st.sampled_from([16, 17, 128]),
    "seed": st.none() | st.integers(min_value=-(2**64), max_value=2**64),
    "stop": st.none() | texts | st.lists(texts, max_size=5),
    "stream": st.none() | st.booleans(),
    "stream_options": st.none() | st.fixed_dictionaries({"include_usage": st.booleans()}),
    "presence_penalty": st.none() | st.floats(min_value=-2, max_value=2),
    "frequency_penalty": st.none() | st.floats(min_value=-2, max_value=2),
    "logit_bias": st.none()
    | st.dictionaries(st.text(max_size=4), st.floats(-100, 100))
    | st.dictionaries(
        st.integers(min_value=0, max_value=1100).map(str),
        st.floats(-101, 101) | st.sampled_from([-100, 100]),
        max_size=4,
    ),
    "user": st.none() | texts,
    "ignore_eos": st.none() | st.booleans(),
    "skip_special_tokens": st.none() | st.booleans(),
    "priority": st.none() | st.integers(min_value=-1001, max_value=1001),
}
content = texts | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": texts}))
# Tools: names valid and not, schemas that compile and ones that do not, calls in history.
tool_names = st.sampled_from(["f", "get_weather"]) | texts
parameters = (
    st.none()
    | st.just({"type": "object", "properties": {"x": {"enum": [1, 2]}}, "required": ["x"]})
    | st.dictionaries(
        st.sampled_from(["type", "properties", "required", "$ref", "enum", "x"]),
        json_values,
        max_size=3,
    )
)
function = st.fixed_dictionaries(
    {"name": tool_names},
    optional={"description": texts, "parameters": parameters, "strict": st.booleans()},
)
tool = st.fixed_dictionaries(
    {"type": st.sampled_from(["function", "function", "x"])}, optional={"function": function}
)
tool_choice = st.sampled_from(["none", "auto", "required", "x"]) | st.fixed_dictionaries(
    {"type": st.just("function"), "function": st.fixed_dictionaries({"name": tool_names})}
)
tool_call = st.fixed_dictionaries(
    {
        "id": texts,
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {"name": tool_names, "arguments": texts | st.just('{"x": 1}')}
        ),
    }
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "bot"])},
    optional={
        "content": st.none() | content,
        "name": texts,
        "tool_calls": st.lists(tool_call, max_size=2),
        "tool_call_id": texts,
    },
)
CHAT: dict[str, st.SearchStrategy[Any]] = {
    **SAMPLING,
    "max_completion_tokens": st.none() | st.integers(min_value=0, max_value=2**40),
    "logprobs": st.none() | st.booleans(),
    "top_logprobs": st.none() | st.integers(min_value=-1, max_value=21),
    "response_format": st.none()
    | st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])})
    | st.fixed_dictionaries(
        {
            "type": st.just("json_schema"),
            "json_schema": st.fixed_dictionaries(
                {
                    "name": st.just("s"),
                    "schema": st.dictionaries(
                        st.sampled_from(["type", "enum", "x"]), json_values, max_size=2
                    ),
                }
            ),
        }
    ),
    "metadata": st.none() | st.dictionaries(st.text(max_size=4), st.text(max_size=4)),
    # Newer fields: accepted where they change nothing, refused by name where they cannot work.
    "safety_identifier": st.none() | texts,
    "prompt_cache_key": st.none() | texts,
    "verbosity": st.none() | st.sampled_from(["low", "medium", "high", "loud"]),
    "service_tier": st.none() | st.sampled_from(["auto", "default", "flex", "priority"]),
    "store": st.none() | st.booleans(),
    "modalities": st.none() | st.lists(st.sampled_from(["text", "audio", "image"]), max_size=2),
    "audio": st.none() | st.fixed_dictionaries({"voice": st.just("alloy")}),
    "prediction": st.none() | st.fixed_dictionaries({"type": st.just("content")}),
    "web_search_options": st.none() | st.just({}),
    "tools": st.none() | st.lists(tool, max_size=3),
    "tool_choice": st.none() | tool_choice,
    "parallel_tool_calls": st.none() | st.booleans(),
}
TEXT: dict[str, st.SearchStrategy[Any]] = {
    **SAMPLING,
    "logprobs": st.none() | st.integers(min_value=-1, max_value=6),
    "echo": st.none() | st.booleans(),
    "best_of": st.none() | st.integers(min_value=0, max_value=2),
}
prompts = (
    texts
    | st.lists(texts, min_size=0, max_size=2)
    | st.lists(st.integers(min_value=-2, max_value=1100), min_size=0, max_size=8)
)


def _bodies(
    required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    keys = [*required, *optional]
    shaped = st.fixed_dictionaries(required, optional=optional).map(_shorten)
    swapped = st.tuples(shaped, st.sampled_from(keys), json_values | texts).map(
        lambda t: _shorten({**t[0], t[1]: t[2]})
    )
    raw = st.dictionaries(st.sampled_from([*keys, "list", "int", "x"]), json_values, max_size=6)
    return st.one_of(shaped, swapped, raw.map(_shorten))


model_names = st.just(MODEL) | st.just(MODEL) | texts
chat_bodies = _bodies({"model": model_names, "messages": st.lists(message, max_size=3)}, CHAT)
text_bodies = _bodies({"model": model_names, "prompt": prompts}, TEXT)


def _fuzzed_runtime(start_runtime: StartRuntime, *args: str) -> Iterator[InProcessRuntime]:
    runtime = start_runtime(*args, "--max-concurrent-requests", "4")
    yield runtime
    # Afterwards: alive, ready, nothing in flight, and still answering.
    assert httpx.get(f"{runtime.url}/healthz").status_code == 200
    assert httpx.get(f"{runtime.url}/readyz").status_code == 200
    wait_until(lambda: runtime.state.admission.idle, 10, "every slot freed")
    answer = httpx.post(
        f"{runtime.url}/v1/completions", json={"model": MODEL, "prompt": "ok", "max_tokens": 2}
    )
    assert answer.status_code == 200


@pytest.fixture(scope="module")
def fuzzed(start_runtime: StartRuntime) -> Iterator[InProcessRuntime]:
    yield from _fuzzed_runtime(start_runtime)


@pytest.fixture(scope="module", params=list(ENGINE_ARGS))
def fuzzed_engine(
    request: pytest.FixtureRequest, start_runtime: StartRuntime
) -> Iterator[InProcessRuntime]:
    """The fuzzed runtime of each engine: generated bodies reach llama.cpp's engine too."""
    if request.param == "mlx":
        mlx: InProcessRuntime = request.getfixturevalue("fuzzed")
        yield mlx
        return
    yield from _fuzzed_runtime(start_runtime, *ENGINE_ARGS[request.param])


def _post(url: str, body: dict[str, Any]) -> httpx.Response:
    # Python's json writes lone surrogates as \\ud800 escapes, as a JavaScript client would.
    content = json.dumps(body).encode()
    return httpx.post(
        url, content=content, headers={"content-type": "application/json"}, timeout=30
    )


def _check(response: httpx.Response, chat: bool) -> None:
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert response.status_code in ERROR_STATUSES, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str) and error["message"]
        assert "None" not in error["message"], error["message"]
        return
    if response.headers["content-type"].startswith("text/event-stream"):
        _check_stream(response.text, chat)
    elif chat:
        ChatCompletion.model_validate(response.json(), strict=True)
        assert_required_fields(response.json(), "chat.completion")
    else:
        Completion.model_validate(response.json(), strict=True)
        assert_required_fields(response.json(), "text_completion")


def _check_stream(text: str, chat: bool) -> None:
    events = [line.removeprefix("data: ") for line in text.split("\n\n") if line]
    assert events[-1] == "[DONE]", text[-500:]
    for data in events[:-1]:
        payload = json.loads(data)
        assert "error" not in payload, data
        if chat:
            ChatCompletionChunk.model_validate(payload, strict=True)
            assert_required_fields(payload, "chat.completion.chunk")
        else:
            Completion.model_validate(_text_chunk_as_completion(payload), strict=True)


def _text_chunk_as_completion(payload: dict[str, Any]) -> dict[str, Any]:
    """The SDK parses streamed text chunks as `Completion`, whose `finish_reason` is required,
    while OpenAI's own streams send null until the last chunk: fill it in to check the rest."""
    choices = [{**c, "finish_reason": c["finish_reason"] or "stop"} for c in payload["choices"]]
    return {**payload, "choices": choices}


@FUZZ
@given(body=chat_bodies)
def test_generated_chat_requests_never_fail_the_server(
    fuzzed_engine: InProcessRuntime, body: dict[str, Any]
) -> None:
    _check(_post(f"{fuzzed_engine.url}/v1/chat/completions", body), chat=True)


# Tool requests that reach the engine more often: a user turn, tools, and a choice of calling.
tool_bodies = st.fixed_dictionaries(
    {
        "model": st.just(MODEL),
        "messages": st.lists(message, min_size=1, max_size=3).map(
            lambda ms: [{"role": "user", "content": "hi"}, *ms]
        ),
        "tools": st.lists(
            st.fixed_dictionaries({"type": st.just("function"), "function": function}),
            min_size=1,
            max_size=3,
        ),
    },
    optional={
        "tool_choice": tool_choice,
        "parallel_tool_calls": st.booleans(),
        "stream": st.booleans(),
    },
).map(_shorten)


@settings(FUZZ, max_examples=max(EXAMPLES // 3, 1))
@given(body=tool_bodies)
def test_generated_tool_requests_never_fail_the_server(
    fuzzed_engine: InProcessRuntime, body: dict[str, Any]
) -> None:
    _check(_post(f"{fuzzed_engine.url}/v1/chat/completions", body), chat=True)


@FUZZ
@given(body=text_bodies)
def test_generated_completion_requests_never_fail_the_server(
    fuzzed_engine: InProcessRuntime, body: dict[str, Any]
) -> None:
    _check(_post(f"{fuzzed_engine.url}/v1/completions", body), chat=False)


@FUZZ
@given(raw=st.binary(max_size=200) | texts.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_arbitrary_bytes_get_a_json_error(fuzzed: InProcessRuntime, raw: bytes) -> None:
    response = httpx.post(
        f"{fuzzed.url}/v1/chat/completions",
        content=raw,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    _check(response, chat=True)


@FUZZ
@given(
    model_id=texts | st.sampled_from([MODEL, f"{MODEL}:", f"{MODEL}:x", "../x", "%00", ".", ".."])
)
def test_generated_model_ids_get_a_card_or_a_404(fuzzed: InProcessRuntime, model_id: str) -> None:
    quoted = urllib.parse.quote(model_id.encode("utf-8", "surrogatepass"), safe="")
    # An id of "." or ".." would otherwise be a dot segment, which the client resolves away
    # (`/v1/models/.` is `/v1/models/`, `/v1/models/..` the list) before the server sees it.
    quoted = quoted.replace(".", "%2E")
    response = httpx.get(f"{fuzzed.url}/v1/models/{quoted}", timeout=30)
    assert response.status_code in (200, 404), response.text
    if response.status_code == 200:
        assert Model.model_validate(response.json(), strict=True).id == model_id
    else:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
