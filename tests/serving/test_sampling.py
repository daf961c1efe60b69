"""The sampling fields and the response shape through the official SDK on builtin://tiny:
`n` choices from one prefill, `presence_penalty`/`frequency_penalty` over every generated token,
`logit_bias`, logprobs, the newer request fields, and the fields OpenAI's schemas require.
Everything runs on both engines (`any_runtime`)."""

import json
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

import httpx
import mlx.core as mx
import numpy as np
import openai
import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from modelkube_serving.engine import shared_prefill
from modelkube_serving.engine.penalties import BiasProcessor, PenaltyProcessor
from modelkube_serving.protocol_sampling import MAX_CHOICES
from modelkube_serving.state import RuntimeState
from tests.openai_wire import (
    assert_required_fields,
    chat_chunks,
    sse_payloads,
    text_chunks,
)
from tests.serving.conftest import MODEL
from tests.serving.inprocess import InProcessRuntime

MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Tell me a story."}]
NO_EOS = {"ignore_eos": True}


@pytest.fixture
def any_client(any_runtime: InProcessRuntime) -> Iterator[openai.OpenAI]:
    """The SDK on each engine's runtime in turn."""
    url = f"{any_runtime.url}/v1"
    with openai.OpenAI(base_url=url, api_key="unused", max_retries=0) as sdk:
        yield sdk


def _post(runtime: InProcessRuntime, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{runtime.url}/v1/{path}", json=body, timeout=60)


def _engine(runtime: InProcessRuntime) -> str:
    return cast(RuntimeState, runtime.state).engine.kind


def _encode(runtime: InProcessRuntime, text: str) -> list[int]:
    return cast(RuntimeState, runtime.state).engine.encode(text)


# -- n ---------------------------------------------------------------------------------------
def test_n_choices_share_one_prefill_and_count_usage_once(
    any_runtime: InProcessRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On MLX the prefill is counted here; llama.cpp's shared prefill is checked token for
    token by the llama crate's `forked_greedy_choices_equal_solo_greedy`."""
    runtime = any_runtime
    prefilled: list[int] = []
    real = shared_prefill.prefill

    def counting(gen: Any, cache: Any, tokens: list[int]) -> Any:
        prefilled.append(len(tokens))
        return real(gen, cache, tokens)

    monkeypatch.setattr(shared_prefill, "prefill", counting)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "n " * 40}], "max_tokens": 5}
    three = _post(runtime, "chat/completions", {**body, "n": 3, "seed": 7, **NO_EOS}).json()
    one = _post(runtime, "chat/completions", {**body, "n": 1, **NO_EOS}).json()
    assert_required_fields(three, "chat.completion")
    assert [c["index"] for c in three["choices"]] == [0, 1, 2]
    prompt = one["usage"]["prompt_tokens"]
    assert three["usage"]["prompt_tokens"] == prompt
    assert three["usage"]["completion_tokens"] == 15
    assert three["usage"]["total_tokens"] == prompt + 15
    if _engine(runtime) != "mlx":
        assert prefilled == []
        return
    # One prefill of the prompt (less its last token, less what the prefix cache held).
    assert len(prefilled) == 1
    assert prefilled[0] == prompt - 1 - three["usage"]["prompt_tokens_details"]["cached_tokens"]


def test_greedy_choices_each_equal_the_single_answer(any_client: openai.OpenAI) -> None:
    """The forked caches hold the prompt exactly: every greedy choice is the n=1 answer."""

    def ask(n: int) -> list[str | None]:
        reply = any_client.chat.completions.create(
            model=MODEL, messages=MSG, max_tokens=12, temperature=0, n=n
        )
        return [c.message.content for c in reply.choices]

    (single,) = ask(1)
    assert ask(3) == [single] * 3


def test_seeded_choices_differ_and_streaming_gives_the_same_texts(
    any_runtime: InProcessRuntime,
) -> None:
    runtime = any_runtime
    body = {"model": MODEL, "messages": MSG, "max_tokens": 8, "n": 3, "seed": 11, **NO_EOS}
    whole = ChatCompletion.model_validate(_post(runtime, "chat/completions", body).json())
    assert [c.finish_reason for c in whole.choices] == ["length"] * 3
    texts = [c.message.content for c in whole.choices]
    assert len(set(texts)) > 1, texts
    # Choice 0 is the request itself, seeded as with n=1 (each further choice: seed + index).
    single = _post(runtime, "chat/completions", {**body, "n": 1}).json()
    assert single["choices"][0]["message"]["content"] == texts[0]
    raw = _post(
        runtime,
        "chat/completions",
        {**body, "stream": True, "stream_options": {"include_usage": True}},
    )
    payloads = sse_payloads(raw.content)
    chunks = chat_chunks(payloads)
    for payload in payloads[:-1]:
        assert_required_fields(payload, "chat.completion.chunk")
    streamed = ["", "", ""]
    finishes: Counter[int] = Counter()
    roles: Counter[int] = Counter()
    for chunk in chunks:
        for choice in chunk.choices:
            streamed[choice.index] += choice.delta.content or ""
            finishes[choice.index] += choice.finish_reason is not None
            roles[choice.index] += choice.delta.role == "assistant"
    assert streamed == texts
    assert finishes == roles == {0: 1, 1: 1, 2: 1}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 24
    assert [c.usage is not None for c in chunks].count(True) == 1


def test_n_choices_of_a_text_completion_streamed_and_not(any_runtime: InProcessRuntime) -> None:
    runtime = any_runtime
    body = {"model": MODEL, "prompt": "once upon", "max_tokens": 4, "n": 2, "seed": 3, **NO_EOS}
    whole = _post(runtime, "completions", body).json()
    assert_required_fields(whole, "text_completion")
    Completion.model_validate(whole)
    assert [c["index"] for c in whole["choices"]] == [0, 1]
    assert whole["usage"]["completion_tokens"] == 8
    chunks = text_chunks(
        sse_payloads(_post(runtime, "completions", {**body, "stream": True}).content)
    )
    streamed = ["", ""]
    for chunk in chunks:
        for choice in chunk.choices:
            streamed[choice.index] += choice.text
    assert streamed == [c["text"] for c in whole["choices"]]


@pytest.mark.parametrize("n", [0, MAX_CHOICES + 1])
def test_n_past_the_bound_is_a_400(any_runtime: InProcessRuntime, n: int) -> None:
    body = {"model": MODEL, "messages": MSG, "n": n}
    response = _post(any_runtime, "chat/completions", body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "n"
    assert str(MAX_CHOICES if n else 1) in response.json()["error"]["message"]


def test_n_choices_with_logprobs_and_a_schema_each_follow_it(any_client: openai.OpenAI) -> None:
    """Each choice samples on its own, inside the grammar, with its own logprobs."""
    schema = {
        "type": "object",
        "properties": {"word": {"type": "string", "maxLength": 6}},
        "required": ["word"],
        "additionalProperties": False,
    }
    reply = any_client.chat.completions.create(
        model=MODEL,
        messages=MSG,
        max_tokens=40,
        n=3,
        seed=5,
        logprobs=True,
        top_logprobs=2,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": schema, "strict": True},
        },
    )
    assert [c.index for c in reply.choices] == [0, 1, 2]
    for choice in reply.choices:
        assert choice.finish_reason == "stop"
        assert set(json.loads(choice.message.content or "")) == {"word"}
        content = choice.logprobs and choice.logprobs.content
        # Where the grammar allows one token, llama.cpp lists only that one.
        assert content and all(1 <= len(item.top_logprobs) <= 2 for item in content)
    assert reply.usage is not None
    tokens = sum(len(c.logprobs.content or []) for c in reply.choices if c.logprobs)
    assert reply.usage.completion_tokens == tokens


# -- penalties and logit_bias ----------------------------------------------------------------
def test_penalties_count_every_generated_token_not_a_window() -> None:
    """OpenAI's formula, exactly, after 30 repeats of one token (mlx-lm's window is 20), and
    the prompt's last token (the first call's) counts for nothing."""
    processor = PenaltyProcessor(presence=0.5, frequency=0.25)
    logits = mx.zeros((1, 8))
    processor(mx.array([3]), logits)  # the prompt's last token
    for _ in range(30):
        out = processor(mx.array([3, 5]), logits)
    out = processor(mx.array([5, 2]), logits)
    expected = np.zeros(8, dtype=np.float32)
    expected[5] = -(30 * 0.25 + 0.5)
    expected[2] = -(1 * 0.25 + 0.5)
    assert np.allclose(np.array(out[0]), expected)


def test_a_bias_of_minus_100_bans_and_plus_100_forces() -> None:
    logits = mx.array([[50.0, 1.0, 0.0]])
    out = np.array(BiasProcessor({0: -100.0, 2: 100.0})(mx.array([1]), logits)[0])
    assert out[0] == -np.inf and out[2] == 100.0 and out[1] == 1.0


def test_logit_bias_minus_100_removes_the_greedy_token(
    any_client: openai.OpenAI, any_runtime: InProcessRuntime
) -> None:
    def greedy(bias: dict[str, int] | None = None, max_tokens: int = 1) -> str:
        reply = any_client.completions.create(
            model=MODEL,
            prompt="abc",
            max_tokens=max_tokens,
            temperature=0,
            logit_bias=bias,
            extra_body=NO_EOS,
        )
        return reply.choices[0].text

    first = greedy()
    (token,) = _encode(any_runtime, first)
    assert greedy({str(token): -100}) != first
    assert greedy({str(token): 100}, max_tokens=3) == first * 3


def _most_repeats(client: openai.OpenAI, presence: float = 0.0, frequency: float = 0.0) -> int:
    reply = client.completions.create(
        model=MODEL,
        prompt="the the the",
        max_tokens=40,
        temperature=0,
        logprobs=0,
        presence_penalty=presence,
        frequency_penalty=frequency,
        extra_body=NO_EOS,
    )
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens is not None
    return max(Counter(logprobs.tokens).values())


def test_a_big_frequency_penalty_stops_repetition(any_client: openai.OpenAI) -> None:
    free = _most_repeats(any_client)
    assert free > 3, "greedy output repeats itself; the test needs that to show anything"
    assert _most_repeats(any_client, frequency=2.0) < free
    assert _most_repeats(any_client, presence=2.0) < free


def _first_top_logprobs(client: openai.OpenAI, temperature: float) -> dict[str, float]:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=MSG,
        max_tokens=1,
        temperature=temperature,
        seed=5,
        logprobs=True,
        top_logprobs=5,
    )
    assert reply.choices[0].logprobs is not None
    [first] = reply.choices[0].logprobs.content or []
    top = {t.token: t.logprob for t in first.top_logprobs}
    assert first.token in top or first.logprob <= min(top.values()) + 1e-4
    return top


def test_logprobs_are_taken_before_temperature_and_ordered(any_client: openai.OpenAI) -> None:
    """OpenAI's logprobs are the model's: the same alternatives at any temperature (the
    log-softmax of the logits, before temperature, on both engines), most likely first."""
    cold = _first_top_logprobs(any_client, 0.0)
    hot = _first_top_logprobs(any_client, 1.7)
    assert list(cold) == list(hot)
    assert all(math.isclose(cold[t], hot[t], abs_tol=1e-4) for t in cold)
    values = list(cold.values())
    assert values == sorted(values, reverse=True) and len(values) == 5
    assert all(v <= 0 for v in values) and sum(math.exp(v) for v in values) <= 1 + 1e-4


@pytest.mark.parametrize(
    ("field", "value", "wording"),
    [
        ("logit_bias", {"abc": 1}, "Invalid key in 'logit_bias'"),
        ("logit_bias", {"-1": 1}, "Invalid key in 'logit_bias'"),
        ("logit_bias", {"5": 101}, "between -100 and 100"),
        ("logit_bias", {str(i): 1 for i in range(301)}, "at most 300"),
        ("logit_bias", {"999999": 1}, "not a token id of this model"),
        ("presence_penalty", 2.5, "less than or equal to 2"),
        ("frequency_penalty", -3, "greater than or equal to -2"),
        ("audio", {"voice": "alloy", "format": "wav"}, "audio output is not supported"),
        ("modalities", ["text", "audio"], "audio output is not supported"),
        ("prediction", {"type": "content", "content": "x"}, "predicted outputs"),
        ("web_search_options", {}, "web search is not available"),
        ("verbosity", "loud", "'low', 'medium' or 'high'"),
    ],
)
def test_fields_out_of_range_or_unservable_are_400s_naming_them(
    any_runtime: InProcessRuntime, field: str, value: Any, wording: str
) -> None:
    body = {"model": MODEL, "messages": MSG, "max_tokens": 2, field: value}
    response = _post(any_runtime, "chat/completions", body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == field and error["type"] == "invalid_request_error"
    assert wording in error["message"], error["message"]


def test_newer_fields_that_change_nothing_are_accepted(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=MSG,
        max_tokens=2,
        safety_identifier="user-1234",
        prompt_cache_key="chat-42",
        verbosity="low",
        service_tier="auto",
        store=False,
        metadata={"team": "a"},
        user="someone",
        modalities=["text"],
    )
    assert reply.choices[0].message.role == "assistant"


# -- the shape of responses ------------------------------------------------------------------
def test_messages_and_logprobs_carry_refusal_null(any_runtime: InProcessRuntime) -> None:
    body = {"model": MODEL, "messages": MSG, "max_tokens": 3, "logprobs": True, "top_logprobs": 2}
    whole = _post(any_runtime, "chat/completions", body).json()
    assert_required_fields(whole, "chat.completion")
    choice = whole["choices"][0]
    assert choice["message"]["refusal"] is None
    assert choice["logprobs"]["refusal"] is None
    stream = sse_payloads(_post(any_runtime, "chat/completions", {**body, "stream": True}).content)
    assert stream[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
