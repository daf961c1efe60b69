"""The in-process ceiling: mlx-lm's batch_generate on the same prompts, no HTTP.

A long-lived subprocess (`python -m bench.serving.ceiling_worker MODEL_PATH`), so that the
OpenBLAS preload is in place before the process starts and the model loads only once.
It loads and warms up the model, prints {"ready": true, "blas": ...}, then answers each
command line on stdin, {"concurrency": c, "requests": n, "first": i, "max_tokens": m},
with one JSON line: that round's result, or {"error": ...}. It exits at end of input.
Protocol lines go to the original stdout; anything else printed goes to stderr.
"""

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from bench.serving.prompts import messages_for
from modelkube_serving.engine.blas import loaded_blas


def prompts(tokenizer: Any, first: int, count: int) -> list[list[int]]:
    return [
        list(tokenizer.apply_chat_template(messages_for(i), add_generation_prompt=True))
        for i in range(first, first + count)
    ]


def _level(model: Any, tokenizer: Any, command: dict[str, Any]) -> dict[str, Any]:
    from mlx_lm import batch_generate

    concurrency, requests = int(command["concurrency"]), int(command["requests"])
    first = int(command.get("first", 0))
    token_ids = prompts(tokenizer, first, requests)
    start = time.perf_counter()
    cpu_start = time.process_time()
    response = batch_generate(
        model,
        tokenizer,
        token_ids,
        max_tokens=int(command["max_tokens"]),
        return_token_ids=True,
        completion_batch_size=concurrency,
        prefill_batch_size=min(concurrency, 8),
    )
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    tokens = sum(len(ids) for ids in response.token_ids or [])
    return {
        "first_request": first,
        "requests": requests,
        "wall_s": wall,
        "cpu_s": cpu,
        "generated_tokens": tokens,
        "tok_per_s": tokens / wall,
        "req_per_s": requests / wall,
        "decode_only_tok_per_s": float(response.stats.generation_tps),
    }


def protocol_stream() -> TextIO:
    """A copy of the real stdout for protocol lines; fd 1 and sys.stdout then go to stderr."""
    stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def reply(out: TextIO, payload: dict[str, Any]) -> None:
    out.write(json.dumps(payload) + "\n")
    out.flush()


def serve(level: Callable[[dict[str, Any]], dict[str, Any]], out: TextIO) -> None:
    """Answers each command line on stdin with `level`'s result, until end of input."""
    while line := sys.stdin.readline():
        if not line.strip():
            continue
        try:
            answer = level(json.loads(line))
        except Exception as exc:  # a bad command is an error reply, the worker stays up
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        reply(out, answer)


def main() -> None:
    import mlx.core as mx
    from mlx_lm import load

    out = protocol_stream()
    loaded = load(sys.argv[1])
    model, tokenizer = loaded[0], loaded[1]
    model.set_dtype(mx.float32)
    _level(model, tokenizer, {"concurrency": 1, "requests": 1, "max_tokens": 8})  # warm-up
    reply(out, {"ready": True, "blas": loaded_blas()})
    serve(lambda command: _level(model, tokenizer, command), out)


if __name__ == "__main__":
    main()
