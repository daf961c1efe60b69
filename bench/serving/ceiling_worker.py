"""The in-process ceiling: mlx-lm's batch_generate on the same prompts, no HTTP.

Run as a subprocess (`python -m bench.serving.ceiling_worker SPEC_JSON`) so that the
OpenBLAS preload is in place before the process starts. Prints one JSON line.
"""

import json
import sys
import time
from typing import Any

from bench.serving.prompts import messages_for
from modelkube_serving.engine.blas import loaded_blas


def _prompts(tokenizer: Any, count: int) -> list[list[int]]:
    return [
        list(tokenizer.apply_chat_template(messages_for(i), add_generation_prompt=True))
        for i in range(count)
    ]


def _level(model: Any, tokenizer: Any, concurrency: int, requests: int, max_tokens: int) -> Any:
    from mlx_lm import batch_generate

    prompts = _prompts(tokenizer, requests)
    start = time.perf_counter()
    response = batch_generate(
        model,
        tokenizer,
        prompts,
        max_tokens=max_tokens,
        return_token_ids=True,
        completion_batch_size=concurrency,
        prefill_batch_size=min(concurrency, 8),
    )
    wall = time.perf_counter() - start
    tokens = sum(len(ids) for ids in response.token_ids or [])
    return {
        "concurrency": concurrency,
        "requests": requests,
        "wall_s": wall,
        "generated_tokens": tokens,
        "tok_per_s": tokens / wall,
        "req_per_s": requests / wall,
        "decode_only_tok_per_s": float(response.stats.generation_tps),
    }


def main() -> None:
    import mlx.core as mx
    from mlx_lm import load

    spec = json.loads(sys.argv[1])
    loaded = load(spec["path"])
    model, tokenizer = loaded[0], loaded[1]
    model.set_dtype(mx.float32)
    _level(model, tokenizer, 1, 1, 8)  # warm-up
    levels = [_level(model, tokenizer, c, n, spec["max_tokens"]) for c, n in spec["levels"]]
    print(json.dumps({"blas": loaded_blas(), "levels": levels}))


if __name__ == "__main__":
    main()
