"""A real instruct model, builtin://smollm2-135m-instruct, through the official openai client.

One `modelkube serve` process for the module. The converted model is cached under the
model cache (`make models` creates it), so only a cold cache pays the conversion. Greedy
decoding makes the answers reproducible; the expected words are ones any correct answer
contains.
"""

from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionTokenLogprob
from openai.types.shared_params import ResponseFormatJSONSchema
from pydantic import BaseModel, Field

from modelkube_serving.metrics import PREFIX_CACHE_HIT_TOKENS
from modelkube_serving.models.uri import resolve_model
from tests.serving.conftest import scrape
from tests.serving.runtime_process import RuntimeProcess
from tests.serving.schema_table import SCHEMAS
from tests.serving.test_schema_table import check_choice, response_format

pytestmark = pytest.mark.real_model

MODEL = "smollm2-135m-instruct"
_LOGPROBS: dict[str, Any] = {"logprobs": True, "top_logprobs": 2}
# Greedy, this model answers おはやくないですが、... here: multi-byte characters, several of
# them split across tokens, and a stop string made of two of them.
JAPANESE: list[ChatCompletionMessageParam] = [
    {
        "role": "user",
        "content": "How do you say 'thank you' in Japanese? Answer in Japanese script.",
    }
]


@pytest.fixture
def client(engine_runtime: RuntimeProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{engine_runtime.url}/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


def ask(client: openai.OpenAI, question: str, max_tokens: int = 20) -> str:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": question}],
        max_tokens=max_tokens,
        temperature=0,
    )
    return reply.choices[0].message.content or ""


def test_models_lists_the_real_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == [MODEL]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What is the capital of France?", "Paris"),
        ("What is the capital of Japan?", "Tokyo"),
        ("What is 2 + 2?", "4"),
        ("How many days are in a week?", "7"),
    ],
)
def test_greedy_factual_answers(
    client: openai.OpenAI, engine: str, question: str, expected: str
) -> None:
    if engine == "llamacpp" and expected == "Paris":
        # llama.cpp's own llama-server answers "L'Étoile, la Marseillaise, ..." here, greedy,
        # on this Q4_1 file (case 0 of data/smollm2_greedy_ids.json); MLX's float32 says Paris.
        pytest.skip("llama.cpp itself answers this one wrong; parity is test_greedy_parity's")
    answer = ask(client, question)
    assert expected in answer, answer


def test_streaming_with_a_stop_string_on_multibyte_text(client: openai.OpenAI, engine: str) -> None:
    whole = client.chat.completions.create(
        model=MODEL,
        messages=JAPANESE,
        max_tokens=24,
        temperature=0,
    )
    full = whole.choices[0].message.content or ""
    assert "です" in full, full
    expected = full.split("です", 1)[0]
    assert expected and all(ord(ch) > 0x7F for ch in expected)

    stream = client.chat.completions.create(
        model=MODEL,
        messages=JAPANESE,
        max_tokens=24,
        temperature=0,
        stop=["です"],
        stream=True,
        **_LOGPROBS,
    )
    deltas: list[str] = []
    logprobs: list[ChatCompletionTokenLogprob] = []
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        deltas.append(choice.delta.content or "")
        if choice.logprobs and choice.logprobs.content:
            logprobs.extend(choice.logprobs.content)
        finish = choice.finish_reason or finish
    text = "".join(deltas)
    assert text == expected  # cut before the stop string, whatever tokens it spans
    assert "\ufffd" not in text  # no delta ends inside a character
    assert finish == "stop"
    assert len(logprobs) > len(text)  # characters split across tokens
    for item in logprobs:
        assert item.logprob <= 0
        # Greedy: the chosen token is the most likely one.
        assert item.top_logprobs[0].logprob == pytest.approx(item.logprob, abs=1e-4)

    stopped = client.chat.completions.create(
        model=MODEL,
        messages=JAPANESE,
        max_tokens=24,
        temperature=0,
        stop=["です"],
    )
    assert stopped.choices[0].message.content == expected
    assert stopped.choices[0].finish_reason == "stop"


def test_a_conversation_sent_again_reuses_its_prefix_and_answers_the_same(
    client: openai.OpenAI, engine_runtime: RuntimeProcess
) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "You are a geography teacher. Answer in one sentence."},
        {"role": "user", "content": "Which river flows through Cairo?"},
    ]
    first = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=12, temperature=0
    )
    hit_tokens = f"{PREFIX_CACHE_HIT_TOKENS}{{model={MODEL}}}"
    before = scrape(engine_runtime.url).get(hit_tokens, 0.0)
    again = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=12, temperature=0
    )
    assert again.choices[0].message.content == first.choices[0].message.content
    assert again.usage is not None and again.usage.prompt_tokens_details is not None
    cached = again.usage.prompt_tokens_details.cached_tokens or 0
    # Nearly all of it: at least the last prompt token is decoded again, for its logits.
    assert cached >= again.usage.prompt_tokens - 16
    # The dashboard's prefix-cache counters count it, on either engine.
    assert scrape(engine_runtime.url)[hit_tokens] - before == cached


def test_a_chat_turn_finds_its_history_after_other_conversations_came_between(
    client: openai.OpenAI,
) -> None:
    """Each new conversation takes the sequence the last one ended in (llama.cpp): the chat
    that ended first must still be cached when its user comes back."""
    system: ChatCompletionMessageParam = {"role": "system", "content": "Answer in one sentence."}
    chat: list[ChatCompletionMessageParam] = [
        system,
        {"role": "user", "content": "Name a large river in South America and where it ends."},
    ]
    first = client.chat.completions.create(model=MODEL, messages=chat, max_tokens=12, temperature=0)
    for topic in ("volcanoes", "glaciers", "deserts"):
        others: list[ChatCompletionMessageParam] = [
            system,
            {"role": "user", "content": f"What is one fact about {topic}?"},
        ]
        client.chat.completions.create(model=MODEL, messages=others, max_tokens=12, temperature=0)
    chat += [
        {"role": "assistant", "content": first.choices[0].message.content or ""},
        {"role": "user", "content": "How long is it?"},
    ]
    again = client.chat.completions.create(model=MODEL, messages=chat, max_tokens=4, temperature=0)
    assert first.usage is not None
    assert again.usage is not None and again.usage.prompt_tokens_details is not None
    assert (again.usage.prompt_tokens_details.cached_tokens or 0) >= first.usage.prompt_tokens


def test_logprob_bytes_rebuild_multibyte_text(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=JAPANESE,
        max_tokens=24,
        temperature=0,
        stop=["です"],
        logprobs=True,
    )
    choice = reply.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    raw = b"".join(bytes(item.bytes or []) for item in choice.logprobs.content)
    # The tokens up to the stop string, whole characters once their bytes are joined.
    assert raw.decode("utf-8", errors="replace").startswith(choice.message.content or "-")


class Capital(BaseModel):
    country: str = Field(max_length=40)
    capital: str = Field(max_length=40)


def test_a_structured_answer_is_right_and_parses(client: openai.OpenAI) -> None:
    """Constrained decoding keeps the model's own answer: greedy, it fills the schema with
    the right capital (on both engines: the masks come from the same core code)."""
    reply = client.chat.completions.parse(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": "What is the capital of France? Answer in JSON with the country "
                "and its capital.",
            }
        ],
        response_format=Capital,
        temperature=0,
        max_tokens=60,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.parsed is not None
    assert choice.message.parsed.capital == "Paris"


def test_a_warm_start_reuses_the_conversion(real_runtime: RuntimeProcess) -> None:
    messages: list[str] = []
    path = resolve_model(f"builtin://{MODEL}", progress=messages.append)
    assert messages == [f"gguf: SmolLM2-135M-Instruct.Q4_1.gguf: reusing {path}"]


# -- sampling fields and n on the real model ---------------------------------------------------
def test_three_choices_of_a_real_answer(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name a fruit."}],
        max_tokens=12,
        temperature=0.9,
        seed=5,
        n=3,
    )
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert all(c.message.content for c in reply.choices)
    assert len({c.message.content for c in reply.choices}) > 1
    assert reply.usage is not None and reply.usage.completion_tokens > 12
    streamed = ["", "", ""]
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name a fruit."}],
        max_tokens=12,
        temperature=0.9,
        seed=5,
        n=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = None
    for chunk in stream:
        for choice in chunk.choices:
            streamed[choice.index] += choice.delta.content or ""
        usage = chunk.usage or usage
    assert streamed == [c.message.content for c in reply.choices]
    assert usage is not None and usage.completion_tokens == reply.usage.completion_tokens
    assert usage.prompt_tokens == reply.usage.prompt_tokens


def test_greedy_choices_of_a_real_answer_each_equal_the_single_one(client: openai.OpenAI) -> None:
    def answers(n: int) -> list[str | None]:
        reply = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "What is the capital of Japan?"}],
            max_tokens=16,
            temperature=0,
            n=n,
        )
        return [c.message.content for c in reply.choices]

    (single,) = answers(1)
    assert answers(4) == [single] * 4


def test_banning_the_first_greedy_token_changes_the_answer(client: openai.OpenAI) -> None:
    ask: ChatCompletionMessageParam = {"role": "user", "content": "What is the capital of France?"}
    first = client.chat.completions.create(
        model=MODEL, messages=[ask], max_tokens=1, temperature=0, logprobs=True
    )
    logprobs = first.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    text = bytes(logprobs.content[0].bytes or []).decode()
    # The token's id: the one completion of max_tokens=1 with this prompt as token ids.
    token = _token_id(client, text)
    banned = client.chat.completions.create(
        model=MODEL, messages=[ask], max_tokens=1, temperature=0, logit_bias={str(token): -100}
    )
    assert banned.choices[0].message.content != first.choices[0].message.content


def _token_id(client: openai.OpenAI, text: str) -> int:
    """The id of the token whose text is `text`, found through logit_bias: forcing it gives it."""
    from modelkube_native import Vocabulary

    vocab = Vocabulary(str(resolve_model(f"builtin://{MODEL}") / "tokenizer.json"))
    ids = [i for i in range(vocab.size) if vocab.decode([i], skip_special_tokens=False) == text]
    assert ids, text
    return ids[0]


def test_a_big_frequency_penalty_stops_the_repetition(client: openai.OpenAI) -> None:
    def most_repeats(penalty: float) -> int:
        reply = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Write the word hello 20 times."}],
            max_tokens=30,
            temperature=0,
            logprobs=True,
            frequency_penalty=penalty,
        )
        logprobs = reply.choices[0].logprobs
        assert logprobs is not None and logprobs.content is not None
        return max(Counter(t.token for t in logprobs.content).values(), default=0)

    free = most_repeats(0.0)
    assert free >= 6, "greedy, the model repeats the word; the test needs that"
    assert most_repeats(2.0) < free / 2


@pytest.mark.parametrize(
    "name", ["nested objects", "array bounded", "anyOf scalars", "$ref and $defs", "format date"]
)
def test_table_schemas_validate_on_the_real_model(client: openai.OpenAI, name: str) -> None:
    schema = SCHEMAS[name]
    replies = [
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"Answer as JSON: {name}"}],
            response_format=cast(ResponseFormatJSONSchema, response_format(name, schema)),
            temperature=1.0,
            seed=seed,
            max_tokens=120,
        )
        for seed in (1, 2)
    ]
    finished = [check_choice(r.choices[0].model_dump(), schema) for r in replies]
    assert any(finished), replies
