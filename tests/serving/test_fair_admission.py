"""Fair queueing, priorities, rate limits and queue deadlines, on real runtime processes."""

import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path

import httpx
import openai
import pytest

from tests.operator.harness import wait_until
from tests.serving.conftest import API_KEY, MODEL, StartRuntime, scrape
from tests.serving.inprocess import InProcessRuntime

OTHER_KEY = "sk-second-key"
QUEUED = f"modelkube_requests_queued{{model={MODEL}}}"


def sdk(runtime: InProcessRuntime, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{runtime.url}/v1", api_key=key, max_retries=0)


def chat(client: openai.OpenAI, max_tokens: int = 2, **extra: object) -> str:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=max_tokens,
        extra_body=extra or None,
    )
    return reply.choices[0].message.content or ""


def queued_is(runtime: InProcessRuntime, n: int) -> Callable[[], bool]:
    return lambda: scrape(runtime.url).get(QUEUED) == n


def hold_the_only_slot(runtime: InProcessRuntime, key: str) -> Generator[None, None, None]:
    """A long streamed request keeps the single slot busy until the caller moves on."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 1500,
        "stream": True,
        "ignore_eos": True,
    }
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=60) as client:
        url = f"{runtime.url}/v1/chat/completions"
        with client.stream("POST", url, json=body, headers=headers) as running:
            lines = running.iter_lines()  # a reference: dropping it closes the connection
            next(lines)
            yield


@pytest.fixture(scope="module")
def limited(start_runtime: StartRuntime, keys_file: Path) -> InProcessRuntime:
    return start_runtime(
        "--api-keys-file", str(keys_file), "--rate-limit-rpm", "3", "--rate-limit-tpm", "1000"
    )


def test_rate_limit_is_per_key_and_says_when_to_retry(limited: InProcessRuntime) -> None:
    with sdk(limited, API_KEY) as first, sdk(limited, OTHER_KEY) as second:
        for _ in range(3):
            chat(first)
        with pytest.raises(openai.RateLimitError) as limited_error:
            chat(first)
        assert limited_error.value.response.headers["retry-after"] == "20"
        body = limited_error.value.response.json()["error"]
        assert body["code"] == "rate_limit_exceeded"
        assert "requests per minute" in body["message"]
        chat(second)  # another key has its own budget


def test_request_bigger_than_the_token_limit_is_a_clear_400(limited: InProcessRuntime) -> None:
    with sdk(limited, OTHER_KEY) as client, pytest.raises(openai.BadRequestError) as error:
        chat(client, max_tokens=1500)
    assert "limit of 1000 tokens per minute" in error.value.message


@pytest.mark.parametrize("priority", [-1001, 1001, "high"])
def test_priority_out_of_range_is_rejected(runtime: InProcessRuntime, priority: object) -> None:
    with sdk(runtime, "unused") as client, pytest.raises(openai.BadRequestError) as error:
        chat(client, priority=priority)
    assert error.value.body is not None
    assert "priority" in str(error.value.message)


def test_queued_past_the_deadline_gets_504_and_nothing_runs(start_runtime: StartRuntime) -> None:
    runtime = start_runtime("--max-concurrent-requests", "1", "--max-queue-wait", "0.5")
    holder = hold_the_only_slot(runtime, "unused")
    next(holder)
    started = time.monotonic()
    refused = httpx.post(
        f"{runtime.url}/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2},
        timeout=30,
    )
    # Waited its deadline out (not refused at once); no upper bound: a loaded machine is slow.
    assert time.monotonic() - started > 0.4
    assert refused.status_code == 504
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "queue_timeout"
    assert scrape(runtime.url)[QUEUED] == 0
    holder.close()


def test_a_busy_key_does_not_starve_another(start_runtime: StartRuntime, keys_file: Path) -> None:
    runtime = start_runtime("--max-concurrent-requests", "1", "--api-keys-file", str(keys_file))
    holder = hold_the_only_slot(runtime, API_KEY)
    next(holder)
    finished: list[str] = []
    lock = threading.Lock()

    def request(name: str, key: str) -> None:
        with sdk(runtime, key) as client:
            chat(client, max_tokens=400)
        with lock:
            finished.append(name)

    threads = []
    for i, (name, key) in enumerate(
        [*((f"busy{n}", API_KEY) for n in range(4)), ("other", OTHER_KEY)]
    ):
        threads.append(threading.Thread(target=request, args=(name, key)))
        threads[-1].start()
        wait_until(queued_is(runtime, i + 1), 20, f"{i + 1} queued")
    holder.close()  # the slot frees: the queue drains one at a time
    for t in threads:
        t.join(120)
    # First come, first served would finish "other" last; fair queueing lets it in second.
    assert finished.index("other") <= 1, finished


def test_lower_priority_value_is_served_first(start_runtime: StartRuntime) -> None:
    runtime = start_runtime("--max-concurrent-requests", "1")
    holder = hold_the_only_slot(runtime, "unused")
    next(holder)
    finished: list[str] = []

    def request(name: str, priority: int) -> None:
        with sdk(runtime, "unused") as client:
            chat(client, priority=priority)
        finished.append(name)

    threads = []
    for i, (name, priority) in enumerate([("batch", 10), ("normal", 0), ("urgent", -5)]):
        threads.append(threading.Thread(target=request, args=(name, priority)))
        threads[-1].start()
        wait_until(queued_is(runtime, i + 1), 20, f"{i + 1} queued")
    holder.close()
    for t in threads:
        t.join(60)
    assert finished == ["urgent", "normal", "batch"]
