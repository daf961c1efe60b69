"""Proxy mode end to end: the official openai client -> our runtime -> an upstream on loopback.

Two real upstreams: another runtime process serving builtin://tiny (a provider that behaves),
and FaultUpstream (one that fails on cue). Nothing leaves the machine.
"""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.fault_upstream import Fault, FaultUpstream
from tests.serving.conftest import MODEL, StartRuntime, scrape
from tests.serving.inprocess import InProcessRuntime

HOSTED = "hosted"  # the name clients use for the proxied model
UPSTREAM_KEY = "sk-upstream-secret"
OUR_KEY = "sk-ours-0123456789"
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Tell me about the operator."}
]


def proxy_process(tmp_path: Path, upstream_url: str, *extra: str) -> InProcessRuntime:
    args = [
        "--upstream-provider",
        "custom",
        "--upstream-base-url",
        upstream_url,
        "--upstream-model",
        MODEL,
        "--served-model-name",
        HOSTED,
        *extra,
    ]
    with pytest.MonkeyPatch.context() as env:  # read once, as the process reads it at start
        env.setenv("MODELKUBE_UPSTREAM_API_KEY", UPSTREAM_KEY)
        return InProcessRuntime(args, tmp_path / "proxy.log").start(timeout=60)


@pytest.fixture(scope="module")
def fault() -> Iterator[FaultUpstream]:
    upstream = FaultUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def fault_proxy(
    fault: FaultUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessRuntime]:
    keys = tmp_path_factory.mktemp("proxy-keys") / "keys"
    keys.write_text(f"{OUR_KEY}\n")
    proc = proxy_process(
        tmp_path_factory.mktemp("fault-proxy"),
        fault.url,
        "--api-keys-file",
        str(keys),
        "--upstream-timeout",
        "1",
        "--upstream-breaker-cooldown",
        "2",
        "--programs-file",
        str(_programs_file(tmp_path_factory.mktemp("programs"))),
    )
    yield proc
    proc.stop()


@pytest.fixture
def upstream(fault: FaultUpstream, fault_proxy: InProcessRuntime) -> FaultUpstream:
    """The fault upstream, with the proxy's breaker closed again after the last test."""
    fault.reset()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = httpx.post(
            f"{fault_proxy.url}/v1/chat/completions",
            json={"model": HOSTED, "messages": MESSAGES},
            headers={"authorization": f"Bearer {OUR_KEY}"},
            timeout=10,
        )
        if r.status_code == 200:
            break
        time.sleep(0.2)
    fault.reset()
    return fault


@pytest.fixture
def sdk(fault_proxy: InProcessRuntime) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{fault_proxy.url}/v1", api_key=OUR_KEY, max_retries=0) as c:
        yield c


def _programs_file(directory: Path) -> Path:
    path = directory / "programs.json"
    path.write_text(json.dumps({"programs": [{"name": "qa", "signature": "question -> answer"}]}))
    return path


# -- a provider that behaves: another runtime ----------------------------------------------
@pytest.fixture(scope="module")
def tiny_proxy(
    start_runtime: StartRuntime, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[InProcessRuntime, InProcessRuntime]]:
    upstream = start_runtime()
    proxy = proxy_process(tmp_path_factory.mktemp("tiny-proxy"), f"{upstream.url}/v1")
    yield upstream, proxy
    proxy.stop()


def test_answers_match_the_upstream_called_directly(
    tiny_proxy: tuple[InProcessRuntime, InProcessRuntime],
) -> None:
    upstream, proxy = tiny_proxy
    direct = openai.OpenAI(base_url=f"{upstream.url}/v1", api_key="x", max_retries=0)
    through = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="x", max_retries=0)
    args = {"messages": MESSAGES, "max_tokens": 12, "temperature": 0.0}
    want = direct.chat.completions.create(model=MODEL, **args)  # type: ignore[call-overload]
    got = through.chat.completions.create(model=HOSTED, **args)  # type: ignore[call-overload]
    assert got.choices[0].message.content == want.choices[0].message.content
    assert got.usage is not None and got.usage.completion_tokens == 12

    stream = through.chat.completions.create(model=HOSTED, stream=True, **args)  # type: ignore[call-overload]
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) > 2, "streamed in pieces, not one block"
    assert "".join(pieces) == want.choices[0].message.content

    text = through.completions.create(
        model=HOSTED, prompt="The operator", max_tokens=5, temperature=0.0
    )
    assert (
        text.choices[0].text
        == direct.completions.create(
            model=MODEL, prompt="The operator", max_tokens=5, temperature=0.0
        )
        .choices[0]
        .text
    )
    assert [m.id for m in through.models.list()] == [HOSTED]

    samples = scrape(proxy.url)
    assert samples[f"modelkube_requests_total{{endpoint=chat,model={HOSTED},status=200}}"] == 2
    assert samples["modelkube_upstream_requests_total{outcome=200,provider=custom}"] == 3
    assert samples[f"modelkube_generation_tokens_total{{model={HOSTED}}}"] >= 12 + 5
    assert samples["modelkube_upstream_circuit_open{provider=custom}"] == 0


def test_an_unknown_model_and_bad_bodies_are_ours_to_refuse(
    tiny_proxy: tuple[InProcessRuntime, InProcessRuntime],
) -> None:
    local, proxy = tiny_proxy
    through = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="`tiny` does not exist"):
        through.chat.completions.create(model=MODEL, messages=MESSAGES)
    # One validator: the proxy refuses what local mode refuses, in the same words.
    for body, message in [
        (b"{not json", "not valid JSON"),
        (b"", "The request body is empty"),
        (b"[]", "must be a JSON object"),
        (b'{"model": "M"}', "Missing required parameter: 'messages'"),
        (b'{"model": "M", "messages": []}', "at least 1 item"),
        (
            b'{"model": "M", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
            "boolean",
        ),
        (
            b'{"model": "M", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
            "max_tokens",
        ),
        (
            b'{"model": "M", "messages": [{"role": "user", "content": "x"}], "priority": 5000}',
            "priority",
        ),
        (b'{"model": "M", "messages": [{"role": "user", "content": "x"}], "seed": 1e30}', "seed"),
        (b'{"model": "M", "messages": [{"role": "user", "content": "\\ud800"}]}', "surrogate"),
    ]:
        answers = []
        for runtime, name in ((proxy, HOSTED), (local, MODEL)):
            sent = body.replace(b'"M"', json.dumps(name).encode())
            r = httpx.post(f"{runtime.url}/v1/chat/completions", content=sent, timeout=10)
            assert r.status_code == 400, (sent, r.text)
            answers.append(r.json()["error"])
        assert message in answers[0]["message"], answers[0]
        assert answers[0] == answers[1]


# -- a provider that fails on cue ------------------------------------------------------------
def test_our_keys_guard_the_proxy_and_the_providers_key_is_sent(
    upstream: FaultUpstream, fault_proxy: InProcessRuntime, sdk: openai.OpenAI
) -> None:
    with (
        openai.OpenAI(base_url=f"{fault_proxy.url}/v1", api_key="wrong", max_retries=0) as c,
        pytest.raises(openai.AuthenticationError),
    ):
        c.chat.completions.create(model=HOSTED, messages=MESSAGES)
    assert upstream.received == []
    answer = sdk.chat.completions.create(
        model=HOSTED,
        messages=MESSAGES,
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        extra_body={"priority": -5},  # ours, for admission: taken, not forwarded
    )
    assert answer.choices[0].message.content == "echo: Tell me about the operator."
    [seen] = upstream.received
    assert seen.headers["authorization"] == f"Bearer {UPSTREAM_KEY}", (
        "the provider's key, not the client's"
    )
    assert seen.body["model"] == MODEL and seen.body["tools"][0]["function"]["name"] == "f"
    assert "priority" not in seen.body


def test_429_and_5xx_are_retried_honouring_retry_after(
    upstream: FaultUpstream, fault_proxy: InProcessRuntime, sdk: openai.OpenAI
) -> None:
    before = scrape(fault_proxy.url).get("modelkube_upstream_retries_total{provider=custom}", 0)
    upstream.then(Fault(429, (("retry-after", "0.2"),)), Fault(503))
    answer = sdk.chat.completions.create(model=HOSTED, messages=MESSAGES)
    assert answer.choices[0].message.content
    assert len(upstream.received) == 3
    after = scrape(fault_proxy.url)["modelkube_upstream_retries_total{provider=custom}"]
    assert after - before == 2


def test_a_429_past_the_retry_budget_comes_back_with_its_retry_after(
    upstream: FaultUpstream, sdk: openai.OpenAI
) -> None:
    upstream.then(
        Fault(
            429,
            (("retry-after", "120"),),
            {"error": {"message": "slow down", "type": "requests", "code": "rate_limit"}},
        )
    )
    with pytest.raises(openai.RateLimitError) as raised:
        sdk.chat.completions.create(model=HOSTED, messages=MESSAGES)
    assert raised.value.response.headers["retry-after"] == "120"
    assert raised.value.message.endswith("upstream custom: slow down")
    assert len(upstream.received) == 1


def test_provider_errors_become_openai_error_bodies(
    upstream: FaultUpstream, sdk: openai.OpenAI
) -> None:
    upstream.then(
        Fault(400, body={"message": "invalid request: temperature too high"})
    )  # Cohere's shape
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model=HOSTED, messages=MESSAGES)
    assert bad.value.code == "upstream_400"
    assert "temperature too high" in bad.value.message
    upstream.then(Fault(500), Fault(500), Fault(500))
    with pytest.raises(openai.InternalServerError) as failed:
        sdk.chat.completions.create(model=HOSTED, messages=MESSAGES)
    assert failed.value.status_code == 502 and failed.value.code == "upstream_500"


def test_a_slow_provider_times_out_as_504(upstream: FaultUpstream, sdk: openai.OpenAI) -> None:
    upstream.then(*[Fault(delay_s=1.5)] * 3)
    with pytest.raises(openai.APIStatusError) as raised:
        sdk.chat.completions.create(model=HOSTED, messages=MESSAGES)
    assert raised.value.status_code == 504
    assert raised.value.code == "upstream_timeout"


def test_streams_pass_through_and_a_cut_stream_ends_in_an_error_event(
    upstream: FaultUpstream, sdk: openai.OpenAI
) -> None:
    stream = sdk.chat.completions.create(
        model=HOSTED, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: Tell me about the operator."
    assert chunks[-1].usage is not None
    upstream.then(Fault(cut_after=2))
    cut = sdk.chat.completions.create(model=HOSTED, messages=MESSAGES, stream=True)
    got: list[str] = []
    with pytest.raises(openai.APIError, match="cut the response short"):
        got.extend(chunk.choices[0].delta.content or "" for chunk in cut)
    assert got == ["echo: ", "Tell "]


def test_programs_run_on_the_provider(
    upstream: FaultUpstream, fault_proxy: InProcessRuntime
) -> None:
    upstream.then(Fault(content='{"answer": "4"}'))
    r = httpx.post(
        f"{fault_proxy.url}/v1/programs/qa",
        json={"inputs": {"question": "What is 2 + 2?"}},
        headers={"authorization": f"Bearer {OUR_KEY}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == {"answer": "4"}
    [seen] = upstream.received
    assert "What is 2 + 2?" in json.dumps(seen.body["messages"])
    # The JSON adapter's schema goes to the provider, which decides what to do with it.
    schema = seen.body["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["answer"]


def test_a_provider_answer_that_does_not_parse_is_a_422(
    upstream: FaultUpstream, fault_proxy: InProcessRuntime
) -> None:
    upstream.then(Fault(content="four"))
    r = httpx.post(
        f"{fault_proxy.url}/v1/programs/qa",
        json={"inputs": {"question": "What is 2 + 2?"}},
        headers={"authorization": f"Bearer {OUR_KEY}"},
        timeout=30,
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "unparsable_output"


def test_a_failing_provider_trips_the_breaker(
    upstream: FaultUpstream, fault_proxy: InProcessRuntime, sdk: openai.OpenAI
) -> None:
    upstream.then(*[Fault(500)] * 6)  # two calls of three attempts: five failures open it
    for _ in range(2):
        with pytest.raises(openai.APIStatusError):
            sdk.chat.completions.create(model=HOSTED, messages=MESSAGES)
    reached = len(upstream.received)
    with pytest.raises(openai.APIStatusError) as raised:
        sdk.chat.completions.create(model=HOSTED, messages=MESSAGES)
    assert raised.value.status_code == 503 and raised.value.code == "upstream_circuit_open"
    assert int(raised.value.response.headers["retry-after"]) >= 1
    assert len(upstream.received) == reached, "held back, not sent"
    assert scrape(fault_proxy.url)["modelkube_upstream_circuit_open{provider=custom}"] == 1


def test_an_unreachable_provider_is_a_502(tmp_path: Path) -> None:
    proxy = proxy_process(tmp_path, "http://127.0.0.1:9/v1", "--upstream-retries", "0")
    try:
        with (
            openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="x", max_retries=0) as c,
            pytest.raises(openai.APIStatusError) as raised,
        ):
            c.chat.completions.create(model=HOSTED, messages=MESSAGES)
        assert raised.value.status_code == 502 and raised.value.code == "upstream_unreachable"
    finally:
        proxy.stop()
