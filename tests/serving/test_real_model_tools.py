"""Tool calling on a real model, builtin://smollm2-135m-instruct, through the official SDK.

SmolLM2's chat template takes no tools, so the runtime's fallback prompt shows them (the
Hermes syntax in the system prompt). `tool_choice: required` makes the grammar enforce the
call; the model still chooses the arguments. Greedy decoding keeps the answers reproducible.
Every test runs on both engines (`engine_runtime`): the grammar's masks come from the same core
code on llama.cpp as on MLX.
"""

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from tests.openai_wire import chat_chunks, sse_payloads
from tests.serving.runtime_process import RuntimeProcess

pytestmark = pytest.mark.real_model

MODEL = "smollm2-135m-instruct"
WEATHER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": WEATHER,
        },
    }
]
ASK: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the weather like in Paris today?"}
]


def _function_calls(message: Any) -> list[ChatCompletionMessageFunctionToolCall]:
    calls = message.tool_calls or []
    assert all(isinstance(c, ChatCompletionMessageFunctionToolCall) for c in calls), calls
    return list(calls)


@pytest.fixture
def client(engine_runtime: RuntimeProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{engine_runtime.url}/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


def _create(client: openai.OpenAI, **kwargs: Any) -> ChatCompletion:
    """A completion read raw and validated strictly with the SDK's own type."""
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, temperature=0, max_tokens=60, **kwargs
    )
    return ChatCompletion.model_validate(json.loads(raw.text), strict=True)


@pytest.fixture(scope="module")
def forced(engine_runtime: RuntimeProcess) -> ChatCompletion:
    """The answer to the weather question with the call forced, one call."""
    with openai.OpenAI(base_url=f"{engine_runtime.url}/v1", api_key="unused", max_retries=0) as sdk:
        return _create(
            sdk, messages=ASK, tools=TOOLS, tool_choice="required", parallel_tool_calls=False
        )


def test_a_weather_question_calls_the_tool_with_the_city(forced: ChatCompletion) -> None:
    choice = forced.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = _function_calls(choice.message)
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER)
    assert arguments["city"] == "Paris", arguments


def test_the_tool_result_round_trips_into_the_answer(
    client: openai.OpenAI, forced: ChatCompletion
) -> None:
    message = forced.choices[0].message
    [call] = _function_calls(message)
    history: list[ChatCompletionMessageParam] = [
        *ASK,
        message.model_dump(exclude_none=True),  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 degrees celsius."},
    ]
    answer = _create(client, messages=history, tools=TOOLS, tool_choice="none")
    choice = answer.choices[0]
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    # This small model repeats the result rather than phrase it; the result is in the answer.
    assert "24" in (choice.message.content or ""), choice.message.content


def test_a_streamed_call_matches_the_whole_one(
    client: openai.OpenAI, forced: ChatCompletion
) -> None:
    [expected] = _function_calls(forced.choices[0].message)
    with client.chat.completions.with_streaming_response.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=60,
        stream=True,
    ) as response:
        chunks = chat_chunks(sse_payloads(response.read()))
    parts = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert parts[0].id and parts[0].function and parts[0].function.name == "get_weather"
    assert len(parts) > 2  # the name, then the arguments in fragments
    arguments = "".join(p.function.arguments or "" for p in parts if p.function)
    assert arguments == expected.function.arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_auto_lets_the_model_choose_and_what_it_writes_parses(client: openai.OpenAI) -> None:
    response = _create(client, messages=ASK, tools=TOOLS)
    choice = response.choices[0]
    if choice.message.tool_calls:
        assert choice.finish_reason == "tool_calls"
        for call in _function_calls(choice.message):
            json.loads(call.function.arguments)
    else:
        assert choice.message.content
        assert "<tool_call>" not in choice.message.content
