"""One interpreter's side of the threads bench: ops/s of three native calls with 1..8 threads.

Imports only the standard library and modelkube_native, so the free-threaded venv runs it:
`python -m bench.native.threads_worker --upstream URL --tokenizer PATH --window S`; prints JSON
`{"python": ..., "gil": ..., "results": {workload: {threads: ops_per_s}}}`.
"""

import argparse
import json
import random
import sys
import sysconfig
import threading
import time
from collections.abc import Callable

from modelkube_native import (
    FinishReason,
    OutputPath,
    PrefixIndex,
    RenderSpec,
    UpstreamClient,
    Vocabulary,
)

THREAD_COUNTS = (1, 2, 4, 8)
BATCH = 32  # requests per output-path step
TOKENS = 64  # tokens per request, then a new batch
PROMPT = 512  # tokens per prefix lookup
CHAT = "/chat/completions"
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()

StepRows = list[
    tuple[int, int | None, FinishReason | None, tuple[float, list[int], list[float]] | None]
]
# A workload makes one thread's loop body: called until the window closes; returns ops done.
Workload = Callable[[int], Callable[[], int]]


def measure(threads: int, workload: Workload, window_s: float) -> float:
    """Ops per second of `threads` threads each running their loop body for `window_s`."""
    bodies = [workload(i) for i in range(threads)]
    barrier = threading.Barrier(threads + 1)
    counts = [0] * threads
    stop = threading.Event()

    def run(index: int) -> None:
        body, done = bodies[index], 0
        barrier.wait()
        while not stop.is_set():
            done += body()
        counts[index] = done

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    time.sleep(window_s)
    stop.set()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - started)


def upstream_calls(url: str) -> Workload:
    client = UpstreamClient(url)  # one client, shared, as a server's threads would share it

    def make(_index: int) -> Callable[[], int]:
        def call() -> int:
            answer = client.request("POST", CHAT, BODY)
            assert answer.status == 200
            return 1

        return call

    return make


def output_steps(tokenizer: str) -> Workload:
    """Each thread an engine of its own (its OutputPath), as a batch of 32 decodes."""
    vocabulary = Vocabulary(tokenizer)

    def make(index: int) -> Callable[[], int]:
        out = OutputPath(vocabulary)
        rng = random.Random(index)
        tokens = [rng.randrange(1, vocabulary.size) for _ in range(TOKENS)]
        state = {"position": TOKENS, "next": 0}

        def step() -> int:
            if state["position"] == TOKENS:
                base = state["next"]
                for handle in range(base, base + BATCH):
                    spec = RenderSpec(f"r{handle}", "m", chat=True, stream=True, created=1)
                    out.add(handle, spec)
                state["position"], state["next"] = 0, base + BATCH
            position = state["position"]
            finish = FinishReason.LENGTH if position == TOKENS - 1 else None
            first = state["next"] - BATCH
            rows: StepRows = [
                (h, tokens[position], finish, None) for h in range(first, first + BATCH)
            ]
            out.step(rows)
            state["position"] = position + 1
            return 1

        return step

    return make


def prefix_lookups() -> Workload:
    """One index shared by every thread (as one server's), 1,000 cached prompts."""
    rng = random.Random(0)
    index = PrefixIndex(max_bytes=1 << 40)
    prompts = [[rng.randrange(32000) for _ in range(PROMPT)] for _ in range(100)]
    for handle, prompt in enumerate(prompts):
        for cut in range(PROMPT // 10, PROMPT + 1, PROMPT // 10):
            index.insert(prompt[:cut], handle * 100 + cut, 1)

    def make(thread: int) -> Callable[[], int]:
        queries = [[*p[:400], 1, 2, 3] for p in prompts[thread::8]]
        turn = [0]

        def lookup() -> int:
            turn[0] += 1
            assert index.longest_prefix(queries[turn[0] % len(queries)]) is not None
            return 1

        return lookup

    return make


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.native.threads_worker")
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--window", type=float, default=1.0)
    args = parser.parse_args(argv)
    workloads = {
        "upstream request": upstream_calls(args.upstream),
        "output step (batch 32)": output_steps(args.tokenizer),
        "prefix lookup (512 tokens)": prefix_lookups(),
    }
    results = {
        name: {str(n): measure(n, workload, args.window) for n in THREAD_COUNTS}
        for name, workload in workloads.items()
    }
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    build = "free-threaded" if sysconfig.get_config_var("Py_GIL_DISABLED") else "default"
    print(
        json.dumps({"python": f"{sys.version.split()[0]} {build}", "gil": gil, "results": results})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
