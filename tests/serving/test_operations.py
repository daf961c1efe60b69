"""Auth, overload, disconnects, draining, metrics and BLAS, on real runtime processes."""

import asyncio
import json
import signal
import threading
import time
from pathlib import Path

import httpx
import mlx.core as mx
import openai
import pytest
from starlette.types import Message

from tests.serving.conftest import API_KEY, MODEL, StartProcess, StartRuntime, scrape
from tests.serving.inprocess import InProcessRuntime, serving_app
from tests.waiting import wait_until

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}]}
IN_FLIGHT = f"modelkube_requests_in_flight{{model={MODEL}}}"


# -- API keys ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-key", "Basic " + API_KEY, "Bearer", "Bearer " + API_KEY + "x"]
)
def test_v1_refuses_missing_or_wrong_keys(
    auth_runtime: InProcessRuntime, header: str | None
) -> None:
    headers = {"authorization": header} if header else {}
    response = httpx.post(f"{auth_runtime.url}/v1/chat/completions", json=CHAT, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_every_listed_key_is_accepted_and_ops_stay_open(auth_runtime: InProcessRuntime) -> None:
    for key in (API_KEY, "sk-second-key"):
        with openai.OpenAI(base_url=f"{auth_runtime.url}/v1", api_key=key, max_retries=0) as sdk:
            assert sdk.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=2
            )
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{auth_runtime.url}{path}").status_code == 200


def test_sdk_raises_authentication_error(auth_runtime: InProcessRuntime) -> None:
    sdk = openai.OpenAI(base_url=f"{auth_runtime.url}/v1", api_key="nope", max_retries=0)
    with sdk, pytest.raises(openai.AuthenticationError):
        sdk.models.list()


def test_keys_never_reach_the_log(auth_runtime: InProcessRuntime) -> None:
    httpx.post(
        f"{auth_runtime.url}/v1/chat/completions",
        json=CHAT,
        headers={"authorization": "Bearer sk-leaked-if-logged"},
    )
    log = auth_runtime.log_path.read_text()
    assert API_KEY not in log
    assert "sk-leaked-if-logged" not in log


def test_open_runtime_warns_loudly(runtime: InProcessRuntime) -> None:
    assert "no API keys configured: /v1 is open" in runtime.log_path.read_text()


# -- overload ---------------------------------------------------------------------------
def test_full_queue_answers_429_with_retry_after(
    start_runtime: StartRuntime, engine_args: tuple[str, ...]
) -> None:
    small = start_runtime(
        *engine_args, "--max-concurrent-requests", "1", "--max-queued-requests", "1"
    )
    url = f"{small.url}/v1/chat/completions"
    long_job = {**CHAT, "max_tokens": 1500, "stream": True, "ignore_eos": True}
    with httpx.Client(timeout=60) as c1, httpx.Client(timeout=60) as c2:
        with c1.stream("POST", url, json=long_job) as running:
            lines = running.iter_lines()  # keep a reference: dropping it closes the connection
            next(lines)  # admitted and generating
            queued = threading.Thread(target=lambda: c2.post(url, json={**CHAT, "max_tokens": 2}))
            queued.start()
            wait_until(
                lambda: scrape(small.url).get(f"modelkube_requests_queued{{model={MODEL}}}") == 1,
                10,
                "the second request queued",
            )
            refused = httpx.post(url, json={**CHAT, "max_tokens": 2})
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["type"] == "rate_limit_error"
        queued.join(30)  # closing the stream freed the slot for the queued request
        assert not queued.is_alive()
    with openai.OpenAI(base_url=f"{small.url}/v1", api_key="x", max_retries=0) as sdk:
        assert sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=2
        )


# -- disconnects -------------------------------------------------------------------------
def test_disconnect_mid_stream_frees_the_slot_and_stops_generating(
    any_runtime: InProcessRuntime,
) -> None:
    runtime = any_runtime
    generated = f"modelkube_generation_tokens_total{{model={MODEL}}}"
    with (
        httpx.Client(timeout=60) as client,
        client.stream(
            "POST",
            f"{runtime.url}/v1/chat/completions",
            json={**CHAT, "max_tokens": 1800, "stream": True, "ignore_eos": True},
        ) as response,
    ):
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
        assert scrape(runtime.url)[IN_FLIGHT] == 1
    wait_until(lambda: scrape(runtime.url)[IN_FLIGHT] == 0, 5, "the slot freed")
    before = scrape(runtime.url).get(generated, 0)
    time.sleep(0.5)
    assert scrape(runtime.url).get(generated, 0) == before  # nothing is still decoding for nobody


@pytest.mark.asyncio
async def test_disconnect_while_waiting_for_a_whole_response_cancels_it(
    any_runtime: InProcessRuntime,
) -> None:
    runtime = any_runtime
    async with httpx.AsyncClient(timeout=60) as client:
        task = asyncio.create_task(
            client.post(
                f"{runtime.url}/v1/chat/completions",
                json={**CHAT, "max_tokens": 1800, "ignore_eos": True},
            )
        )
        # Cancel only once it runs: an in-flight gauge at 0 proves nothing otherwise.
        await asyncio.to_thread(
            wait_until, lambda: scrape(runtime.url)[IN_FLIGHT] == 1, 10, "the request running"
        )
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await asyncio.to_thread(
        wait_until, lambda: scrape(runtime.url)[IN_FLIGHT] == 0, 5, "the slot freed"
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [True, False])
async def test_client_gone_before_the_first_byte_frees_its_slot(stream: bool) -> None:
    """The slot is taken before the response starts; a client that leaves then (the generator
    or the task not started yet) must not keep it."""
    body = json.dumps({**CHAT, "max_tokens": 50, "stream": stream}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}  # gone as soon as the body was sent

    async def send(_message: Message) -> None:
        await asyncio.sleep(0.05)  # a slow socket: the disconnect lands before any chunk

    async with serving_app() as app:
        admission = app.state.runtime.admission
        await app(scope, receive, send)
        await asyncio.wait_for(admission.wait_idle(), 10)
        assert admission.running == 0


# -- draining ----------------------------------------------------------------------------
def test_sigterm_drains_in_flight_requests_then_exits_zero(start_process: StartProcess) -> None:
    proc = start_process()
    results: list[tuple[str | None, int]] = []

    def stream_one() -> None:
        with openai.OpenAI(base_url=f"{proc.url}/v1", api_key="x", max_retries=0) as sdk:
            stream = sdk.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "drain me"}],
                max_tokens=150,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"ignore_eos": True},
            )
            finish, usage = None, -1
            for chunk in stream:
                if chunk.choices and chunk.choices[0].finish_reason:
                    finish = chunk.choices[0].finish_reason
                if chunk.usage:
                    usage = chunk.usage.completion_tokens
            results.append((finish, usage))

    clients = [threading.Thread(target=stream_one) for _ in range(4)]
    for t in clients:
        t.start()
    wait_until(lambda: scrape(proc.url)[IN_FLIGHT] == 4, 10, "four streams running")
    proc.signal(signal.SIGTERM)
    wait_until(lambda: httpx.get(f"{proc.url}/readyz").status_code == 503, 5, "readyz 503")
    refused = httpx.post(f"{proc.url}/v1/chat/completions", json={**CHAT, "max_tokens": 2})
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "unavailable"
    for t in clients:
        t.join(60)
    assert proc.proc is not None
    assert proc.proc.wait(30) == 0, proc.log()
    assert sorted(results) == [("length", 150)] * 4  # none lost, none cut short


# -- metrics and BLAS -------------------------------------------------------------------
def test_metrics_parse_and_move_as_requests_are_served(any_runtime: InProcessRuntime) -> None:
    runtime = any_runtime
    before = scrape(runtime.url)
    with openai.OpenAI(base_url=f"{runtime.url}/v1", api_key="x", max_retries=0) as sdk:
        # Time per output token exists only after the first; a random model may end at once.
        reply = sdk.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "count me"}],
            max_tokens=7,
            extra_body={"ignore_eos": True},
        )
    after = scrape(runtime.url)
    ok = f"modelkube_requests_total{{endpoint=chat,model={MODEL},status=200}}"
    assert after[ok] == before.get(ok, 0) + 1
    gen = f"modelkube_generation_tokens_total{{model={MODEL}}}"
    assert reply.usage is not None
    assert after[gen] - before.get(gen, 0) == reply.usage.completion_tokens == 7
    prompt = f"modelkube_prompt_tokens_total{{model={MODEL}}}"
    assert after[prompt] - before.get(prompt, 0) == reply.usage.prompt_tokens
    for name in (
        "modelkube_time_to_first_token_seconds_count",
        "modelkube_request_duration_seconds_count",
        "modelkube_time_per_output_token_seconds_count",
        "modelkube_batch_size_count",
    ):
        assert any(k.startswith(name) and v > 0 for k, v in after.items()), name
    assert IN_FLIGHT in after
    assert f"modelkube_requests_queued{{model={MODEL}}}" in after
    kind = runtime.state.engine.kind  # type: ignore[attr-defined]
    assert [k for k in after if k.startswith("modelkube_engine_info")] == [
        f"modelkube_engine_info{{engine={kind}}}"
    ]


def test_runtime_process_runs_on_openblas(start_process: StartProcess) -> None:
    runtime = start_process()
    assert runtime.proc is not None
    maps = Path(f"/proc/{runtime.proc.pid}/maps").read_text()
    assert "libopenblas" in maps
    assert scrape(runtime.url)["modelkube_blas_info{library=openblas}"] == 1


def test_a_dead_engine_fails_liveness_so_the_pod_restarts(start_runtime: StartRuntime) -> None:
    runtime = start_runtime()
    assert httpx.get(f"{runtime.url}/healthz").status_code == 200
    engine = runtime.state.engine  # type: ignore[attr-defined]
    engine.stop()  # the engine thread ends, as it would on a bug that escapes every guard
    assert httpx.get(f"{runtime.url}/healthz").status_code == 503
    assert httpx.get(f"{runtime.url}/readyz").status_code == 503


def test_the_mlx_engine_thread_clears_its_mlx_state_before_it_ends(
    start_runtime: StartRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLX's per-thread streams and compile cache, left to the thread's exit, are freed
    # without the GIL and abort the process now and then (a drained runtime exited -6).
    cleared_on: list[str] = []
    clear_streams = mx.clear_streams

    def recording() -> None:
        cleared_on.append(threading.current_thread().name)
        clear_streams()

    monkeypatch.setattr(mx, "clear_streams", recording)
    runtime = start_runtime()
    answer = httpx.post(f"{runtime.url}/v1/chat/completions", json={**CHAT, "max_tokens": 4})
    assert answer.status_code == 200
    runtime.state.engine.stop()  # type: ignore[attr-defined]
    assert cleared_on == ["mlx-engine"]


def test_vllm_named_metrics_follow_the_load_for_endpoint_pickers(
    start_runtime: StartRuntime, engine_args: tuple[str, ...]
) -> None:
    runtime = start_runtime(*engine_args, "--max-concurrent-requests", "1")
    running = f"vllm:num_requests_running{{model_name={MODEL}}}"
    waiting = f"vllm:num_requests_waiting{{model_name={MODEL}}}"
    usage = f"vllm:kv_cache_usage_perc{{model_name={MODEL}}}"
    idle = scrape(runtime.url)
    assert idle[running] == 0 and idle[waiting] == 0 and 0 <= idle[usage] <= 1
    assert any(k.startswith("vllm:lora_requests_info{") for k in idle)
    url = f"{runtime.url}/v1/chat/completions"
    long_job = {**CHAT, "max_tokens": 1500, "stream": True, "ignore_eos": True}
    with httpx.Client(timeout=60) as c1, c1.stream("POST", url, json=long_job) as held:
        lines = held.iter_lines()
        next(lines)  # admitted and generating
        queued = threading.Thread(target=lambda: httpx.post(url, json={**CHAT, "max_tokens": 2}))
        queued.start()
        wait_until(lambda: scrape(runtime.url)[waiting] == 1, 10, "one waiting")
        busy = scrape(runtime.url)
        assert busy[running] == 1
        # llama.cpp's prefixes live in the one KV pool the running request fills too; MLX's
        # prefix cache takes a prompt when its request ends.
        assert 0 < busy[usage] <= 1 if "llamacpp" in engine_args else busy[usage] == 0
    queued.join(30)
    wait_until(lambda: scrape(runtime.url)[running] == 0, 10, "none running")
    assert scrape(runtime.url)[usage] > 0  # the finished prompts are cached


def test_vllm_metrics_can_be_turned_off(start_runtime: StartRuntime) -> None:
    runtime = start_runtime("--no-vllm-metrics")
    assert not any(k.startswith("vllm:") for k in scrape(runtime.url))
