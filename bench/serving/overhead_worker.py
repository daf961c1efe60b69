"""The bare llama.cpp engine: the runtime's own LlamaEngine step loop driven from Python, with
no HTTP, no asyncio and no engine thread, on the same prompts as the served runs.

A long-lived subprocess (`python -m bench.serving.overhead_worker MODEL_PATH`) speaking the
ceiling worker's protocol: {"concurrency": c, "requests": n, "first": i, "max_tokens": m} in,
one JSON line with that round's result out. It builds the engine as `modelkube serve --engine
llamacpp` does (LlamaSettings' defaults, a thread per CPU), so the served run's excess over this
one is the runtime's own cost: HTTP, admission, the asyncio hand-off, the SSE stream.
"""

import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from mlx_lm.utils import load_tokenizer
from modelkube_native import LlamaEngine, OutputPath, RenderSpec, Vocabulary

from bench.serving.ceiling_worker import prompts, protocol_stream, reply, serve
from modelkube_serving.engine.llamacpp_engine import DEFAULT_CONTEXT, LlamaSettings, gguf_source


def closed_loop(
    engine: LlamaEngine,
    output: OutputPath,
    queue: deque[list[int]],
    concurrency: int,
    max_tokens: int,
) -> int:
    """Keeps `concurrency` requests running until `queue` is empty (a new one starts as soon as
    one ends, as the HTTP clients do); the tokens generated."""
    handles = iter(range(sys.maxsize))
    generated = 0
    while queue or engine.running:
        while queue and engine.running < concurrency:
            prompt, handle = queue.popleft(), next(handles)
            cached = engine.add(handle, prompt, max_tokens=max_tokens, temperature=0.0)
            render = RenderSpec(f"bare-{handle}", "bare", chat=True, stream=True, created=0)
            output.add(handle, render, prompt_tokens=len(prompt), cached_tokens=cached)
        for result in engine.step(output):
            if result.finish is not None:
                generated += result.completion_tokens
    return generated


def _level(
    engine: LlamaEngine, output: OutputPath, tokenizer: Any, command: dict[str, Any]
) -> dict[str, Any]:
    concurrency, requests = int(command["concurrency"]), int(command["requests"])
    first = int(command.get("first", 0))
    queue = deque(prompts(tokenizer, first, requests))
    start = time.perf_counter()
    tokens = closed_loop(engine, output, queue, concurrency, int(command["max_tokens"]))
    wall = time.perf_counter() - start
    return {
        "first_request": first,
        "requests": requests,
        "wall_s": wall,
        "generated_tokens": tokens,
        "tok_per_s": tokens / wall,
        "req_per_s": requests / wall,
    }


def main() -> None:
    out = protocol_stream()
    path = Path(sys.argv[1])
    settings = LlamaSettings()
    tokenizer = load_tokenizer(path)
    engine = LlamaEngine(
        gguf_source(path),
        context_length=DEFAULT_CONTEXT,
        n_batch=settings.step_tokens,
        n_seq_max=settings.max_batch_size,
        n_threads=len(os.sched_getaffinity(0)),
    )
    output = OutputPath(Vocabulary(str(path / "tokenizer.json")))
    _level(engine, output, tokenizer, {"concurrency": 1, "requests": 1, "max_tokens": 8})
    reply(out, {"ready": True, "blas": "none (ggml's own kernels)"})
    serve(lambda command: _level(engine, output, tokenizer, command), out)


if __name__ == "__main__":
    main()
