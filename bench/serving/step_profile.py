"""Where one decode step of the real model goes on MLX's CPU backend, at batch 1 and B.

`python -m bench.serving.step_profile [--batch 1,16] [--context 64]`: times, each as the
median of several evaluated runs (mx.eval), the whole forward pass of one token per sequence
(with a KV cache of `--context` tokens), then its parts measured alone with the same shapes:
the linear layers (q, k, v, o, gate, up, down over 30 layers), attention (scaled dot-product
over the cache), the norms and activations, the LM head (576 x 49152, the largest matmul),
greedy sampling over the logits, and mlx-lm's own `generate_step` loop, whose excess over
the forward pass is Python and scheduling. Run it with OpenBLAS preloaded, as the servers
are (see bench/serving/servers.py), or the matmuls use MLX's reference BLAS.
"""

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import mlx.core as mx

from bench.serving.config import REAL_MODEL, positive_ints
from modelkube_serving.models.uri import resolve_model

REPEATS = 20


def timed(fn: Callable[[], Any], repeats: int = REPEATS) -> float:
    """Median milliseconds of `fn` with its result evaluated, after two warm-up runs."""
    for _ in range(2):
        mx.eval(fn())
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        mx.eval(fn())
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def _forward(model: Any, batch: int, context: int) -> tuple[Callable[[], Any], Any]:
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    prompt = mx.zeros((batch, context), dtype=mx.int32)
    mx.eval(model(prompt, cache=cache))
    token = mx.zeros((batch, 1), dtype=mx.int32)

    def step() -> Any:
        logits = model(token, cache=cache)
        for c in cache:  # keep the cache at `context` tokens: every run sees the same length
            c.offset -= 1
        return logits

    return step, cache


def profile(batch: int, context: int) -> dict[str, float]:
    from mlx_lm import load
    from mlx_lm.generate import generate_step

    path = resolve_model(f"builtin://{REAL_MODEL}", dtype="float32")
    model, _ = load(str(path))
    args = model.args
    layers = len(model.model.layers)
    hidden, inter = args.hidden_size, args.intermediate_size
    heads, kv_heads = args.num_attention_heads, args.num_key_value_heads
    head_dim = hidden // heads
    step, _ = _forward(model, batch, context)
    x = mx.random.normal((batch, 1, hidden))
    layer = model.model.layers[0]
    attn, mlp = layer.self_attn, layer.mlp
    linears = [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj]
    h = mx.random.normal((batch, 1, inter))
    q = mx.random.normal((batch, heads, 1, head_dim))
    k = mx.random.normal((batch, kv_heads, context, head_dim))
    logits = mx.random.normal((batch, args.vocab_size))
    norm = layer.input_layernorm

    def matmuls() -> Any:
        out = [lin(x) for _ in range(layers) for lin in linears]
        out += [mlp.down_proj(h) for _ in range(layers)]
        return out

    def attention() -> Any:
        return [
            mx.fast.scaled_dot_product_attention(q, k, k, scale=head_dim**-0.5)
            for _ in range(layers)
        ]

    def elementwise() -> Any:
        return [norm(x) for _ in range(2 * layers)] + [mx.sigmoid(h) * h * h for _ in range(layers)]

    def lm_head() -> Any:
        return model.model.embed_tokens.as_linear(x)

    def sampling() -> Any:
        return mx.argmax(logits, axis=-1)

    result = {
        "forward_ms": timed(step),
        "linear_layers_ms": timed(matmuls),
        "attention_ms": timed(attention),
        "norms_activations_ms": timed(elementwise),
        "lm_head_ms": timed(lm_head),
        "sampling_ms": timed(sampling),
    }
    if batch == 1:
        prompt = mx.zeros((context,), dtype=mx.int32)
        steps = generate_step(prompt, model, max_tokens=REPEATS + 2)
        next(steps)
        next(steps)
        samples = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            next(steps)
            samples.append((time.perf_counter() - start) * 1000)
        result["generate_step_ms"] = statistics.median(samples)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serving.step_profile")
    parser.add_argument("--batch", default="1,16", help="comma-separated batch sizes")
    parser.add_argument("--context", type=int, default=64, help="tokens in the KV cache")
    args = parser.parse_args(argv)
    for batch in positive_ints(args.batch):
        result = profile(batch, args.context)
        forward = result["forward_ms"]
        print(f"== batch {batch}, {args.context} cached tokens: one decode step ==")
        for key, value in result.items():
            share = f"{100 * value / forward:5.0f}% of forward" if key != "forward_ms" else ""
            print(f"  {key:<22} {value:8.2f} ms  {share}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
