"""The Rust core under parallel callers: admission, the prefix index, the output path and the
upstream client, each shared by 16 threads at once. Every test checks invariants (no lost
slot, no double grant, no crossed answer, every stream whole), not timings.

These run in both test runs: with the GIL (the main venv) and without it (`.venv-ft`, a
free-threaded CPython, where the calls really overlap)."""

import asyncio
import json
import os
import random
import subprocess
import sys
import sysconfig
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from modelkube_native import (
    Admission,
    FinishReason,
    OutputPath,
    PrefixIndex,
    RenderSpec,
    StepResult,
    UpstreamClient,
    Vocabulary,
)

from tests.fault_upstream import FaultUpstream
from tests.freethreaded.threads import run_threads

THREADS = 16
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
CHAT = "/chat/completions"


@pytest.mark.skipif(not FREE_THREADED, reason="a free-threaded CPython only")
def test_importing_the_core_leaves_the_gil_off() -> None:
    """In a fresh interpreter, so that no other module imported by the test run is to blame.
    PYTHON_GIL=0 or -X gil=0 would force the GIL off and hide a module that turns it on."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    probe = "import sys, modelkube_native; print(sys._is_gil_enabled())"
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", probe], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    assert not sys._is_gil_enabled()  # type: ignore[attr-defined,unused-ignore]


class Grants:
    """Who holds an admission slot, checked on every grant and release."""

    def __init__(self, tickets: int, limit: int) -> None:
        self.lock = threading.Lock()
        self.events = [threading.Event() for _ in range(tickets)]
        self.granted: Counter[int] = Counter()
        self.holding = 0
        self.peak = 0
        self.limit = limit

    def grant(self, ticket: int) -> None:
        with self.lock:
            self.granted[ticket] += 1
            assert self.granted[ticket] == 1, f"ticket {ticket} granted twice"
        self.events[ticket].set()

    def hold(self) -> None:
        with self.lock:
            self.holding += 1
            self.peak = max(self.peak, self.holding)
            assert self.holding <= self.limit, "more holders than slots"

    def leave(self) -> None:
        with self.lock:
            self.holding -= 1


def test_admission_under_threads_never_loses_or_double_grants_a_slot() -> None:
    rounds, slots = 150, 4
    admission = Admission(slots, THREADS * rounds)
    grants = Grants(THREADS * rounds, slots)
    cancelled: set[int] = set()
    cancelled_lock = threading.Lock()

    def release() -> None:
        grants.leave()
        following, expired = admission.release(time.monotonic())
        assert expired == []
        if following is not None:
            grants.grant(following)

    def work(index: int) -> None:
        rng = random.Random(index)
        for turn in range(rounds):
            ticket = index * rounds + turn
            now = time.monotonic()
            if admission.submit(ticket, f"key{index % 4}", 0, 1, now + 3600, now):
                grants.grant(ticket)
            elif rng.random() < 0.2 and admission.cancel(ticket):
                with cancelled_lock:
                    cancelled.add(ticket)
                continue
            # Queued (or its cancel lost the race to a grant): the slot comes by a release.
            assert grants.events[ticket].wait(60), f"ticket {ticket} never got its slot"
            grants.hold()
            release()

    run_threads(THREADS, work)
    assert (admission.running, admission.queued) == (0, 0)
    assert not cancelled & set(grants.granted), "a cancelled ticket was granted"
    assert len(grants.granted) + len(cancelled) == THREADS * rounds
    assert grants.peak <= slots


def test_the_prefix_index_under_threads_answers_only_true_prefixes() -> None:
    per_thread, nbytes = 300, 10
    # Room for about half: evictions run while other threads look up and insert.
    index = PrefixIndex(max_bytes=THREADS * per_thread * nbytes // 2)
    tokens_of: dict[int, list[int]] = {}
    evicted: Counter[int] = Counter()
    lock = threading.Lock()

    def work(index_: int) -> None:
        rng = random.Random(index_)
        for turn in range(per_thread):
            handle = index_ * per_thread + turn + 1
            # Shared openings (a system prompt) with private tails.
            tokens = [rng.randrange(3), rng.randrange(3), *(rng.randrange(50) for _ in range(6))]
            with lock:
                tokens_of[handle] = tokens
            gone = index.insert(tokens, handle, nbytes)
            with lock:
                evicted.update(gone)
            query = tokens[: rng.randrange(1, 9)] + [rng.randrange(50) for _ in range(3)]
            found = index.longest_prefix(query)
            if found is not None:
                other, length = found
                with lock:
                    assert tokens_of[other] == query[:length], "not a prefix of the query"

    run_threads(THREADS, work)
    assert max(evicted.values(), default=1) == 1, "a handle left the index twice"
    # Every handle is in the index or came back once (replaced by the same tokens, or evicted).
    assert len(index) + len(evicted) == len(tokens_of)
    assert index.bytes == len(index) * nbytes


def test_the_output_path_under_threads_renders_every_stream_whole(tokenizer_file: Path) -> None:
    vocabulary = Vocabulary(str(tokenizer_file))
    out = OutputPath(vocabulary)
    requests, length = 20, 40

    def work(index: int) -> None:
        rng = random.Random(index)
        for turn in range(requests):
            handle = index * requests + turn
            ids = [rng.randrange(1, vocabulary.size) for _ in range(length)]
            spec = RenderSpec(f"r{handle}", "m", chat=True, stream=True, created=1)
            out.add(handle, spec)
            rows: list[StepResult] = []
            for position, token in enumerate(ids):
                finish = FinishReason.LENGTH if position == length - 1 else None
                rows.extend(out.step([(handle, token, finish, None)]))
            assert all(row.handle == handle for row in rows), "another request's output"
            assert rows[-1].finish == FinishReason.LENGTH
            assert rows[-1].completion_tokens == length
            assert "".join(row.text for row in rows) == vocabulary.decode(ids)
            frames = b"".join(row.data or b"" for row in rows)
            assert frames.endswith(b"data: [DONE]\n\n")

    run_threads(THREADS, work)
    assert len(out) == 0


def chat(text: str, *, stream: bool = False) -> bytes:
    return json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": text}], "stream": stream}
    ).encode()


def streamed_text(frames: bytes) -> str:
    """The content of an SSE chat stream, which must end with [DONE]."""
    events = [line[6:] for line in frames.decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]", "the stream was not whole"
    parts = [json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]]
    return "".join(parts)


def test_one_upstream_client_serves_threads_without_crossing_answers(
    upstream: FaultUpstream,
) -> None:
    client = UpstreamClient(upstream.url)
    calls = 15

    def work(index: int) -> None:
        for turn in range(calls):
            message = f"thread {index} call {turn}"
            if turn % 3 == 2:
                stream = client.stream("POST", CHAT, chat(message, stream=True))
                assert stream.status == 200
                assert streamed_text(b"".join(stream)) == f"echo: {message}"
            else:
                answer = client.request("POST", CHAT, chat(message))
                assert answer.status == 200
                reply = json.loads(answer.body)["choices"][0]["message"]["content"]
                assert reply == f"echo: {message}", "an answer crossed to another caller"

    run_threads(THREADS, work)
    assert client.breaker_state == "closed"


def test_event_loops_in_threads_share_one_upstream_client(upstream: FaultUpstream) -> None:
    """Proxy mode's shape: several event loops (one per server thread), one native client."""
    client = UpstreamClient(upstream.url)
    loops, tasks = 4, 12

    async def one(index: int, turn: int) -> None:
        message = f"loop {index} task {turn}"
        if turn % 2:
            stream = await client.astream("POST", CHAT, chat(message, stream=True))
            assert streamed_text(b"".join([chunk async for chunk in stream])) == f"echo: {message}"
        else:
            answer = await client.arequest("POST", CHAT, chat(message))
            assert json.loads(answer.body)["choices"][0]["message"]["content"] == f"echo: {message}"

    async def serve(index: int) -> None:
        await asyncio.gather(*(one(index, turn) for turn in range(tasks)))

    run_threads(loops, lambda index: asyncio.run(serve(index)))
