"""`n` choices on the llama.cpp engine need a sequence each: a request that finds too few free
waits for them, a client that leaves frees all of them, and more choices than the engine has
sequences is a 400 naming `n`. On a runtime of two sequences (`--max-concurrent-requests 2`)."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
import pytest_asyncio
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from modelkube_serving.engine.llamacpp_engine import LlamaCppEngine
from modelkube_serving.state import RuntimeState
from tests.serving.conftest import ENGINE_ARGS, MODEL, StartRuntime, scrape
from tests.serving.inprocess import InProcessRuntime
from tests.waiting import wait_until

MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Tell me a story."}]
LONG = {"max_tokens": 1500, "ignore_eos": True}  # runs until its client leaves


@pytest.fixture(scope="module")
def two_sequences(start_runtime: StartRuntime) -> InProcessRuntime:
    return start_runtime(*ENGINE_ARGS["llamacpp"], "--max-concurrent-requests", "2")


def _engine(runtime: InProcessRuntime) -> LlamaCppEngine:
    engine = cast(RuntimeState, runtime.state).engine
    assert isinstance(engine, LlamaCppEngine)
    return engine


def _free(runtime: InProcessRuntime) -> int:
    native = _engine(runtime)._engine
    assert native is not None
    return native.free_sequences


def _waiting(runtime: InProcessRuntime) -> int:
    backlog = _engine(runtime)._backlog
    assert backlog is not None
    return len(backlog)


def _idle(runtime: InProcessRuntime) -> bool:
    return _free(runtime) == 2 and _waiting(runtime) == 0


def _body(n: int, **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": MSG, "n": n, "max_tokens": 4, **fields}


@pytest_asyncio.fixture
async def client(two_sequences: InProcessRuntime) -> AsyncIterator[httpx.AsyncClient]:
    wait_until(lambda: _idle(two_sequences), 30, "the engine to be idle")
    async with httpx.AsyncClient(base_url=f"{two_sequences.url}/v1", timeout=120) as http:
        yield http
    wait_until(lambda: _idle(two_sequences), 30, "every sequence to be freed")


def _generated(line: str, index: int) -> bool:
    """A chunk of generated text for choice `index`; the role chunks that open a stream are sent
    before the engine has taken the request."""
    return f'"index":{index}' in line and '"content"' in line and '"role"' not in line


async def _hold_one_sequence(client: httpx.AsyncClient) -> asyncio.Task[None]:
    """A streaming request that holds a sequence until the task is cancelled."""
    started = asyncio.Event()

    async def run() -> None:
        body = _body(1, stream=True, **LONG)
        async with client.stream("POST", "/chat/completions", json=body) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if _generated(line, 0):
                    started.set()

    task = asyncio.create_task(run())
    await asyncio.wait_for(started.wait(), 60)
    return task


async def _until(predicate: Any, what: str) -> None:
    await asyncio.to_thread(wait_until, predicate, 30, what)


@pytest.mark.asyncio
async def test_more_choices_than_sequences_is_a_400_and_as_many_are_served(
    client: httpx.AsyncClient,
) -> None:
    refused = await client.post("/chat/completions", json=_body(3))
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == "n" and error["type"] == "invalid_request_error"
    assert "less than or equal to 2" in error["message"] and "llamacpp" in error["message"]
    served = await client.post("/chat/completions", json=_body(2))
    reply = ChatCompletion.model_validate_json(served.content)
    assert [c.index for c in reply.choices] == [0, 1]


@pytest.mark.asyncio
async def test_choices_wait_for_free_sequences_then_run(
    client: httpx.AsyncClient, two_sequences: InProcessRuntime
) -> None:
    holder = await _hold_one_sequence(client)
    body = _body(2, ignore_eos=True)
    pending = asyncio.create_task(client.post("/chat/completions", json=body))
    await _until(lambda: _waiting(two_sequences) == 1, "the request to wait for sequences")
    assert not pending.done()
    # Endpoint pickers read it as waiting, though admission let it in.
    load = await asyncio.to_thread(scrape, two_sequences.url)
    assert load[f"vllm:num_requests_running{{model_name={MODEL}}}"] == 1
    assert load[f"vllm:num_requests_waiting{{model_name={MODEL}}}"] == 1
    holder.cancel()  # its client leaves: its sequence is freed, and the waiting request runs
    reply = ChatCompletion.model_validate_json((await pending).content)
    assert [c.index for c in reply.choices] == [0, 1]
    assert [c.finish_reason for c in reply.choices] == ["length", "length"]
    assert reply.usage is not None and reply.usage.completion_tokens == 8
    with pytest.raises(asyncio.CancelledError):
        await holder


@pytest.mark.asyncio
async def test_a_client_leaving_frees_every_choice_s_sequence(
    client: httpx.AsyncClient, two_sequences: InProcessRuntime
) -> None:
    started = asyncio.Event()

    async def stream_both() -> None:
        body = _body(2, stream=True, **LONG)
        async with client.stream("POST", "/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if _generated(line, 1):
                    started.set()

    task = asyncio.create_task(stream_both())
    await asyncio.wait_for(started.wait(), 60)
    assert _free(two_sequences) == 0
    task.cancel()
    await _until(lambda: _free(two_sequences) == 2, "both sequences to be freed")


@pytest.mark.asyncio
async def test_a_waiting_request_whose_client_leaves_leaves_the_line(
    client: httpx.AsyncClient, two_sequences: InProcessRuntime
) -> None:
    holder = await _hold_one_sequence(client)
    waiting = asyncio.create_task(client.post("/chat/completions", json=_body(2)))
    await _until(lambda: _waiting(two_sequences) == 1, "the request to wait for sequences")
    waiting.cancel()
    await _until(lambda: _waiting(two_sequences) == 0, "the request to leave the line")
    assert _free(two_sequences) == 1  # the holder still runs
    holder.cancel()
