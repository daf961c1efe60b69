"""Tool calling through the official SDK, on both engines: builtin://tiny on MLX, the real
SmolLM2 GGUF on llama.cpp (under the tiny model's name).

Random weights never call a tool on their own, so these tests force the call
(`tool_choice` `required` or a named function): the grammar then guarantees a call that
parses and whose arguments validate against the function's `parameters`. Every response and
chunk is also read raw and validated with the `openai` package's own types.
"""

import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from modelkube_serving.state import RuntimeState
from tests.openai_wire import chat_chunks, sse_payloads
from tests.serving.conftest import ENGINE_ARGS, MODEL, runtime_of
from tests.serving.inprocess import InProcessRuntime

WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"enum": ["Paris", "Tokyo", "Lima"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
}
TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather forecast of a city.",
            "parameters": WEATHER_PARAMETERS,
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "description": "The time now."},
    },
]
PARAMETERS = {"get_weather": WEATHER_PARAMETERS, "get_time": {"type": "object", "maxProperties": 0}}
ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Weather in Paris?"}]
MAX_TOKENS = 200


@pytest.fixture(scope="module", params=list(ENGINE_ARGS))
def runtime(request: pytest.FixtureRequest) -> InProcessRuntime:
    """Every test here runs on both engines (the grammar's masks are the core's on both)."""
    return runtime_of(request)


def _function_calls(message: Any) -> list[ChatCompletionMessageFunctionToolCall]:
    calls = message.tool_calls or []
    assert all(isinstance(c, ChatCompletionMessageFunctionToolCall) for c in calls), calls
    return list(calls)


def _raw(runtime: InProcessRuntime, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{runtime.url}/v1/chat/completions", json={"model": MODEL, **body}, timeout=120
    )


def _strict(payload: dict[str, Any]) -> ChatCompletion:
    return ChatCompletion.model_validate(payload, strict=True)


def _check_call(call: Any, allowed: set[str]) -> dict[str, Any]:
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name in allowed
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, PARAMETERS[call.function.name])
    assert isinstance(arguments, dict)
    return arguments


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_required_always_calls_a_tool_with_valid_arguments(
    client: openai.OpenAI, seed: int
) -> None:
    response = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=1.0,
        seed=seed,
        max_tokens=MAX_TOKENS,
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    calls = choice.message.tool_calls or []
    assert len(calls) == 1
    _check_call(calls[0], {"get_weather", "get_time"})
    assert choice.message.content is None


def test_a_named_function_is_the_one_called(runtime: InProcessRuntime) -> None:
    reply = _raw(
        runtime,
        messages=ASK,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=MAX_TOKENS,
        seed=3,
    )
    assert reply.status_code == 200, reply.text
    choice = _strict(reply.json()).choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = _function_calls(choice.message)
    assert _check_call(call, {"get_weather"})["city"] in {"Paris", "Tokyo", "Lima"}


def test_a_streamed_call_arrives_as_openai_tool_call_deltas(runtime: InProcessRuntime) -> None:
    body = {
        "messages": ASK,
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": MAX_TOKENS,
        "seed": 4,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    reply = _raw(runtime, **body)
    assert reply.status_code == 200, reply.text
    chunks = chat_chunks(sse_payloads(reply.content))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    parts = [tc for d in deltas for tc in d.tool_calls or []]
    first, rest = parts[0], parts[1:]
    assert first.index == 0 and first.id and first.id.startswith("call_")
    assert first.type == "function" and first.function and first.function.name == "get_weather"
    assert all(p.index == 0 and p.id is None for p in rest)
    assert len(rest) > 1  # the arguments came in fragments, as the model wrote them
    arguments = "".join((p.function.arguments or "") if p.function else "" for p in parts)
    jsonschema.validate(json.loads(arguments), WEATHER_PARAMETERS)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls" and not any(finishes[:-1])
    assert not any(d.content for d in deltas)
    assert chunks[-1].usage is not None

    whole = _strict(_raw(runtime, **{**body, "stream": False, "stream_options": None}).json())
    [call] = _function_calls(whole.choices[0].message)
    assert call.function.arguments == arguments  # same seed, same call
    assert call.function.name == "get_weather"


def test_a_call_and_its_result_round_trip(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        seed=5,
        max_tokens=MAX_TOKENS,
    )
    message = first.choices[0].message
    [call] = _function_calls(message)
    history: list[ChatCompletionMessageParam] = [
        *ASK,
        message.model_dump(exclude_none=True),  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": call.id, "content": '{"forecast": "sunny"}'},
    ]
    # The answer after the result: text (tool_choice none), then another forced call.
    answer = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=history, tools=TOOLS, tool_choice="none", max_tokens=8
    )
    choice = _strict(json.loads(answer.text)).choices[0]
    assert choice.message.tool_calls is None
    assert choice.finish_reason in ("stop", "length")
    # One call (parallel calls on random weights may go on to max_tokens), seeded.
    again = client.chat.completions.create(
        model=MODEL,
        messages=history,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        seed=5,
        max_tokens=MAX_TOKENS,
    )
    assert again.choices[0].finish_reason == "tool_calls"
    assert again.choices[0].message.tool_calls


def test_parallel_calls_each_parse(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        seed=6,
        max_tokens=400,
    )
    choice = response.choices[0]
    calls = choice.message.tool_calls or []
    assert calls
    complete = calls if choice.finish_reason == "tool_calls" else calls[:-1]
    for call in complete:
        _check_call(call, {"get_weather", "get_time"})
    assert len({c.id for c in calls}) == len(calls)


def test_auto_with_no_call_answers_text(runtime: InProcessRuntime) -> None:
    if isinstance(runtime.state, RuntimeState) and runtime.state.engine.kind != "mlx":
        pytest.skip("a real model may call on its own (test_real_model_tools covers it)")
    reply = _raw(runtime, messages=ASK, tools=TOOLS, max_tokens=6, seed=7)
    choice = _strict(reply.json()).choices[0]
    # Random weights do not write a call's tags: the answer is text, not a call.
    assert choice.message.tool_calls is None
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")


@pytest.mark.parametrize("seed", [8, 9])
def test_auto_with_a_json_format_answers_calls_or_that_json(
    runtime: InProcessRuntime, seed: int
) -> None:
    reply = _raw(
        runtime,
        messages=ASK,
        tools=TOOLS,
        response_format={"type": "json_object"},
        parallel_tool_calls=False,
        max_tokens=MAX_TOKENS,
        temperature=1.0,
        seed=seed,
    )
    choice = _strict(reply.json()).choices[0]
    if choice.finish_reason == "tool_calls":
        [call] = _function_calls(choice.message)
        _check_call(call, {"get_weather", "get_time"})
    elif choice.finish_reason == "stop":
        assert isinstance(json.loads(choice.message.content or ""), dict)


BAD_REQUESTS: list[tuple[dict[str, Any], str, str]] = [
    (
        {"tools": [{"type": "function", "function": {"description": "no name"}}]},
        "tools.0.function.name",
        "Missing required parameter",
    ),
    (
        {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        "tool_choice.function.name",
        "no function named 'nope'",
    ),
    ({"tool_choice": "required"}, "tool_choice", "only allowed when 'tools' are specified"),
    (
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {
                            "type": "object",
                            "properties": {"x": {"$ref": "#/$defs/missing"}},
                        },
                    },
                }
            ]
        },
        "tools.0.function.parameters",
        "Invalid schema for function 'f'",
    ),
    ({"tools": [TOOLS[0], TOOLS[0]]}, "tools.1.function.name", "given twice"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice", "Invalid value"),
    (
        {
            "messages": [{"role": "tool", "content": "42"}],
        },
        "messages.0",
        "tool_call_id",
    ),
]


@pytest.mark.parametrize(("extra", "param", "words"), BAD_REQUESTS)
def test_bad_tool_input_is_a_400_naming_it(
    runtime: InProcessRuntime, extra: dict[str, Any], param: str, words: str
) -> None:
    reply = _raw(runtime, **{"messages": ASK, "max_tokens": 4, **extra})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert words in error["message"], error
