"""`response_format` through the official SDK: json_object and json_schema are enforced by
constrained decoding, so even builtin://tiny's random weights answer with JSON that parses
and validates (unless max_tokens cut it, and then finish_reason says "length"). The requests run
on both engines: MLX on tiny, llama.cpp on the real SmolLM2 GGUF (under tiny's name), masked
by the same core code."""

import asyncio
import json
from pathlib import Path
from typing import Any, Literal, cast

import jsonschema
import mlx.core as mx
import openai
import pytest
from modelkube_native import GrammarCompiler, GrammarError
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, Field

from modelkube_serving.engine.constrained import GrammarProcessor
from modelkube_serving.engine.loading import vocab_size
from modelkube_serving.models.builtin import ensure_builtin
from tests.serving.conftest import ENGINE_ARGS, MODEL, runtime_of
from tests.serving.inprocess import InProcessRuntime

MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Answer in JSON."}]


@pytest.fixture(scope="module", params=list(ENGINE_ARGS))
def runtime(request: pytest.FixtureRequest) -> InProcessRuntime:
    """The SDK clients here talk to each engine in turn."""
    return runtime_of(request)


SAMPLES = 3
MAX_TOKENS = 400

# Strings bounded by maxLength: random weights ramble inside a string until max_tokens.
NAME = {"type": "string", "maxLength": 6}

SCHEMAS: dict[str, dict[str, Any]] = {
    "nested objects": {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {"name": NAME, "admin": {"type": "boolean"}},
                "required": ["name", "admin"],
                "additionalProperties": False,
            }
        },
        "required": ["user"],
        "additionalProperties": False,
    },
    "array with bounds": {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": NAME, "minItems": 1, "maxItems": 3},
        },
        "required": ["tags"],
        "additionalProperties": False,
    },
    "enum": {
        "type": "object",
        "properties": {"color": {"enum": ["red", "green", "blue"]}},
        "required": ["color"],
        "additionalProperties": False,
    },
    "anyOf": {
        "type": "object",
        "properties": {
            "value": {"anyOf": [{"type": "boolean"}, {"type": "null"}, {"enum": ["x", "y"]}]}
        },
        "required": ["value"],
        "additionalProperties": False,
    },
    "$ref and $defs": {
        "$defs": {
            "point": {
                "type": "object",
                "properties": {
                    "x": {"type": "integer", "minimum": -9, "maximum": 9},
                    "y": {"type": "integer", "minimum": -9, "maximum": 9},
                },
                "required": ["x", "y"],
                "additionalProperties": False,
            }
        },
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/point"}, "b": {"$ref": "#/$defs/point"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    },
    "numbers with bounds": {
        "type": "object",
        "properties": {
            "count": {"type": "integer", "minimum": 0, "maximum": 100},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["count", "score"],
        "additionalProperties": False,
    },
    "required and optional properties": {
        "type": "object",
        "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 999}, "note": NAME},
        "required": ["id"],
        "additionalProperties": False,
    },
    "top-level array": {"type": "array", "items": {"type": "boolean"}, "maxItems": 4},
}


def _json_schema(name: str, schema: dict[str, Any]) -> Any:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def _check(choice: Any, schema: dict[str, Any] | None) -> None:
    text = choice.message.content
    if choice.finish_reason == "length":
        return  # cut by max_tokens: an unfinished value is no error
    assert choice.finish_reason == "stop", choice
    value = json.loads(text)
    if schema is None:
        assert isinstance(value, dict), text
    else:
        jsonschema.validate(value, schema)


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_json_schema_output_validates(client: openai.OpenAI, name: str) -> None:
    schema = SCHEMAS[name]
    finished = 0
    for seed in range(SAMPLES):
        response = client.chat.completions.create(
            model=MODEL,
            messages=MSG,
            response_format=_json_schema(name.replace(" ", "_").replace("$", ""), schema),
            temperature=1.0,
            seed=seed,
            max_tokens=MAX_TOKENS,
        )
        choice = response.choices[0]
        _check(choice, schema)
        finished += choice.finish_reason == "stop"
    assert finished, f"no sample of {name} finished within {MAX_TOKENS} tokens"


def test_json_object_output_is_an_object(client: openai.OpenAI) -> None:
    for seed in range(SAMPLES):
        response = client.chat.completions.create(
            model=MODEL,
            messages=MSG,
            response_format={"type": "json_object"},
            temperature=1.0,
            seed=seed,
            max_tokens=60,
        )
        _check(response.choices[0], None)


class Item(BaseModel):
    name: str = Field(max_length=6)
    quantity: int = Field(ge=1, le=20)
    kind: Literal["tool", "food"]


class Order(BaseModel):
    items: list[Item] = Field(min_length=1, max_length=2)
    express: bool


def test_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    parsed = 0
    for seed in range(SAMPLES):
        completion = client.chat.completions.parse(
            model=MODEL,
            messages=MSG,
            response_format=Order,
            temperature=1.0,
            seed=seed,
            max_tokens=MAX_TOKENS,
        )
        message = completion.choices[0].message
        if completion.choices[0].finish_reason == "stop":
            assert isinstance(message.parsed, Order)
            parsed += 1
    assert parsed


def test_streamed_json_schema_output_validates(client: openai.OpenAI) -> None:
    schema = SCHEMAS["enum"]
    stream = client.chat.completions.create(
        model=MODEL,
        messages=MSG,
        response_format=_json_schema("enum", schema),
        max_tokens=MAX_TOKENS,
        stream=True,
    )
    text, finish = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    assert finish == "stop"
    jsonschema.validate(json.loads(text), schema)


@pytest.mark.asyncio
async def test_constrained_and_free_requests_share_a_batch(
    async_client: openai.AsyncOpenAI,
) -> None:
    """Rows without a grammar in the same batch still generate freely to max_tokens."""
    schema = SCHEMAS["$ref and $defs"]

    async def constrained(seed: int) -> Any:
        return await async_client.chat.completions.create(
            model=MODEL,
            messages=MSG,
            response_format=_json_schema("points", schema),
            seed=seed,
            max_tokens=MAX_TOKENS,
        )

    async def free() -> Any:
        return await async_client.chat.completions.create(
            model=MODEL, messages=MSG, max_tokens=40, extra_body={"ignore_eos": True}
        )

    results = await asyncio.gather(constrained(1), free(), constrained(2), free())
    for response in results[0::2]:
        _check(response.choices[0], schema)
    for response in results[1::2]:
        assert response.choices[0].finish_reason == "length"
        assert response.usage.completion_tokens == 40


@pytest.mark.parametrize(
    ("response_format", "message"),
    [
        (_json_schema("bad", {"type": "frobnicate"}), "invalid response_format"),
        (
            _json_schema("bad", {"properties": {"a": {"$ref": "#/$defs/missing"}}}),
            "missing",
        ),
        ({"type": "json_schema"}, "requires its json_schema"),
        ({"type": "json_object", "json_schema": {"name": "x"}}, "takes no json_schema"),
        ({"type": "yaml"}, "response_format"),
    ],
)
def test_a_schema_that_cannot_compile_is_a_400(
    client: openai.OpenAI, response_format: Any, message: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL,
            messages=MSG,
            response_format=response_format,
            max_tokens=8,
        )
    assert message in str(caught.value)


def _allowed(logits: mx.array) -> set[int]:
    row = cast(list[float], logits[0].tolist())
    return {i for i, value in enumerate(row) if value != float("-inf")}


def test_the_processor_masks_follows_and_ends_a_request_alone_on_a_refused_token() -> None:
    path = ensure_builtin("tiny")
    width = vocab_size(path)
    eos = 0
    compiler = GrammarCompiler(str(path / "tokenizer.json"), [eos], width)
    enum = {"enum": ["red", "green"]}
    processor = GrammarProcessor(compiler.json_schema(json.dumps(enum)).matcher(), eos)
    logits = mx.zeros((1, width))
    first = _allowed(processor(mx.array([5]), logits))  # 5: the last prompt token, not followed
    assert first and eos not in first and len(first) < width
    # A token the grammar refuses cannot come through the mask; if one ever does, the
    # request ends on end-of-sequence rather than failing the batch.
    refused = next(t for t in range(width) if t not in first)
    assert _allowed(processor(mx.array([5, refused]), logits)) == {eos}
    assert _allowed(processor(mx.array([5, refused, eos]), logits)) == {eos}


def test_a_tokenizer_llguidance_cannot_read_is_a_grammar_error(tmp_path: Path) -> None:
    """The engine then serves without constrained decoding (response_format is a 400)."""
    tokenizer = {
        "version": "1.0",
        "added_tokens": [],
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "a": 1}, "unk_token": "[UNK]"},
    }
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(tokenizer))
    with pytest.raises(GrammarError, match="decoder type"):
        GrammarCompiler(str(path), [0], 2)
