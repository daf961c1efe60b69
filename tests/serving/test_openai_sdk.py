"""The runtime through the official openai client: sync, async and streaming."""

import asyncio
from typing import Any

import httpx
import openai
import pytest
from openai.types import Completion
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionTokenLogprob,
)

from tests.openai_wire import chat_chunks, sse_payloads, text_chunks
from tests.serving.conftest import ENGINE_ARGS, MODEL, runtime_of, scrape
from tests.serving.inprocess import InProcessRuntime

CHAT: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Tell me about the operator."}
]


@pytest.fixture(scope="module", params=list(ENGINE_ARGS))
def runtime(request: pytest.FixtureRequest) -> InProcessRuntime:
    """Every test here runs on both engines, behind the same runtime."""
    return runtime_of(request)


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_chat_completion_reports_usage_and_length(client: openai.OpenAI) -> None:
    # Sampled from random weights, so the end-of-sequence token may come early without this.
    reply = client.chat.completions.create(
        model=MODEL, messages=CHAT, max_tokens=12, extra_body={"ignore_eos": True}
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 12


def test_max_completion_tokens_is_honoured(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=CHAT, max_completion_tokens=5, extra_body={"ignore_eos": True}
    )
    assert reply.usage is not None and reply.usage.completion_tokens == 5


def test_stop_string_ends_with_finish_reason_stop(client: openai.OpenAI) -> None:
    full = (
        client.chat.completions.create(
            model=MODEL,
            messages=CHAT,
            max_tokens=40,
            temperature=0,
        )
        .choices[0]
        .message.content
    )
    assert full and len(full) > 12
    stop = full[8:12]
    cut = client.chat.completions.create(
        model=MODEL,
        messages=CHAT,
        max_tokens=40,
        temperature=0,
        stop=[stop],
    ).choices[0]
    assert cut.finish_reason == "stop"
    assert cut.message.content == full[: full.index(stop)]


def test_streamed_text_matches_the_unstreamed_text(client: openai.OpenAI) -> None:
    whole = (
        client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=20, temperature=0)
        .choices[0]
        .message.content
    )
    stream = client.chat.completions.create(
        model=MODEL,
        messages=CHAT,
        max_tokens=20,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 20


def test_stream_without_include_usage_sends_no_usage_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=3, stream=True)
    assert all(c.choices and c.usage is None for c in stream)


def test_same_seed_gives_same_text(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str | None:
        return (
            client.chat.completions.create(
                model=MODEL,
                messages=CHAT,
                max_tokens=16,
                temperature=1.0,
                seed=seed,
            )
            .choices[0]
            .message.content
        )

    assert sample(7) == sample(7)
    assert len({sample(s) for s in (1, 2, 3)}) > 1


def test_chat_logprobs_with_top_alternatives(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=CHAT,
        max_tokens=4,
        logprobs=True,
        top_logprobs=3,
        extra_body={"ignore_eos": True},  # sampled: an early end-of-sequence would list fewer
    )
    content = reply.choices[0].logprobs and reply.choices[0].logprobs.content
    assert content and len(content) == 4
    for item in content:
        assert item.logprob <= 0
        assert len(item.top_logprobs) == 3
        assert item.top_logprobs[0].logprob >= item.top_logprobs[-1].logprob


def test_text_completion_and_its_stream(client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model=MODEL, prompt="The operator", max_tokens=6, temperature=0
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 6
    stream = client.completions.create(
        model=MODEL, prompt="The operator", max_tokens=6, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in stream if c.choices) == reply.choices[0].text


def test_text_completion_accepts_token_ids(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=MODEL, prompt=[5, 6, 7, 8], max_tokens=3)
    assert reply.usage is not None and reply.usage.prompt_tokens == 4


def test_second_chat_turn_reuses_the_cached_prefix(client: openai.OpenAI) -> None:
    first: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Describe the queue and the cache in detail. " * 20}
    ]
    answer = client.chat.completions.create(
        model=MODEL, messages=first, max_tokens=8, temperature=0
    )
    second: list[ChatCompletionMessageParam] = [
        *first,
        {"role": "assistant", "content": answer.choices[0].message.content or ""},
        {"role": "user", "content": "And then?"},
    ]
    reply = client.chat.completions.create(model=MODEL, messages=second, max_tokens=4)
    assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
    cached = reply.usage.prompt_tokens_details.cached_tokens or 0
    assert cached >= answer.usage.prompt_tokens if answer.usage else False


@pytest.mark.asyncio
async def test_seeded_requests_share_the_batch_and_stay_reproducible(
    async_client: openai.AsyncOpenAI, runtime: InProcessRuntime
) -> None:
    async def sample(seed: int) -> str | None:
        reply = await async_client.chat.completions.create(
            model=MODEL,
            messages=CHAT,
            max_tokens=48,
            temperature=1.0,
            seed=seed,
            extra_body={"ignore_eos": True},
        )
        return reply.choices[0].message.content

    solo = await sample(11)
    before = scrape(runtime.url)
    together = await asyncio.gather(*(sample(11 + (i % 2)) for i in range(8)))
    after = scrape(runtime.url)
    assert together[0] == together[2] == together[4] == together[6] == solo
    batched_steps = sum(
        after[k] - before.get(k, 0)
        for k in after
        if k.startswith("modelkube_batch_size_bucket") and "le=1.0" not in k and "le=+Inf" not in k
    )
    single_steps = after[_bucket("1.0")] - before.get(_bucket("1.0"), 0)
    steps = after[_bucket("+Inf")] - before.get(_bucket("+Inf"), 0)
    assert batched_steps > 0
    assert single_steps < steps / 2  # most steps decoded several seeded requests together


def _bucket(le: str) -> str:
    return f"modelkube_batch_size_bucket{{le={le},model={MODEL}}}"


@pytest.mark.asyncio
async def test_sixteen_concurrent_streams_complete_with_correct_usage(
    async_client: openai.AsyncOpenAI,
) -> None:
    async def one(i: int) -> tuple[str, str | None, int]:
        stream = await async_client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"request {i}"}],
            max_tokens=24 + i,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},  # sampled: each must run to its own max_tokens
        )
        text, finish, usage = "", None, -1
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                usage = chunk.usage.completion_tokens
        return text, finish, usage

    results = await asyncio.gather(*(one(i) for i in range(16)))
    assert [(finish, usage) for _, finish, usage in results] == [
        ("length", 24 + i) for i in range(16)
    ]


def post(runtime: InProcessRuntime, path: str, body: dict[str, Any]) -> httpx.Response:
    response = httpx.post(f"{runtime.url}/v1/{path}", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response


def test_streamed_chat_chunks_are_valid_and_carry_the_unstreamed_logprobs(
    runtime: InProcessRuntime,
) -> None:
    body = {
        "model": MODEL,
        "messages": CHAT,
        "max_tokens": 12,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 2,
    }
    whole = ChatCompletion.model_validate_json(post(runtime, "chat/completions", body).content)
    raw = post(runtime, "chat/completions", {**body, "stream": True}).content
    chunks = chat_chunks(sse_payloads(raw))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    streamed = [i for c in chunks if c.choices and c.choices[0].logprobs for i in content(c)]
    expected = whole.choices[0].logprobs and whole.choices[0].logprobs.content
    assert expected and len(streamed) == len(expected) == 12
    assert [i.token for i in streamed] == [i.token for i in expected]
    assert [i.bytes for i in streamed] == [i.bytes for i in expected]
    for got, want in zip(streamed, expected, strict=True):
        assert got.logprob == pytest.approx(want.logprob, abs=1e-3)
        assert len(got.top_logprobs) == 2
    assert b"".join(bytes(i.bytes or []) for i in expected).decode() == text


def content(chunk: ChatCompletionChunk) -> list[ChatCompletionTokenLogprob]:
    logprobs = chunk.choices[0].logprobs
    return list(logprobs.content or []) if logprobs else []


def test_completion_text_offsets_point_into_the_text_streamed_or_not(
    runtime: InProcessRuntime,
) -> None:
    body = {
        "model": MODEL,
        "prompt": "The operator",
        "max_tokens": 16,
        "temperature": 0,
        "logprobs": 1,
    }
    whole = Completion.model_validate_json(post(runtime, "completions", body).content)
    choice = whole.choices[0]
    assert choice.logprobs is not None and choice.logprobs.tokens is not None
    offsets = choice.logprobs.text_offset
    assert offsets and len(offsets) == len(choice.logprobs.tokens) == 16
    assert offsets[0] == 0 and offsets == sorted(offsets) and offsets[-1] < len(choice.text)
    for offset, token in zip(offsets, choice.logprobs.tokens, strict=True):
        if "\ufffd" not in token:
            assert choice.text[offset : offset + len(token)] == token
    raw = post(runtime, "completions", {**body, "stream": True}).content
    chunks = text_chunks(sse_payloads(raw))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == choice.text
    streamed = [
        o
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for o in c.choices[0].logprobs.text_offset or []
    ]
    assert streamed == offsets
    assert chunks[-1].choices[0].finish_reason == "length"


def test_usage_chunk_and_unstreamed_body_validate(runtime: InProcessRuntime) -> None:
    body = {"model": MODEL, "prompt": "The operator", "max_tokens": 4, "ignore_eos": True}
    stream = {**body, "stream": True, "stream_options": {"include_usage": True}}
    chunks = text_chunks(sse_payloads(post(runtime, "completions", stream).content))
    usage = chunks[-1].usage
    assert not chunks[-1].choices and usage is not None and usage.completion_tokens == 4
    chat = {"model": MODEL, "messages": CHAT, "max_tokens": 4}
    reply = ChatCompletion.model_validate_json(post(runtime, "chat/completions", chat).content)
    assert reply.choices[0].logprobs is None and reply.usage and reply.usage.total_tokens > 4
