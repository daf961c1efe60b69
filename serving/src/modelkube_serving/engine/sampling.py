"""Per-request samplers that keep a request in the shared batch.

mlx_lm.server serves a request with `seed` alone because it seeds the global
generator; a sampler with its own PRNG key is reproducible inside a batch.
"""

import os
from collections.abc import Callable

import mlx.core as mx
from mlx_lm.sample_utils import apply_top_p

from modelkube_serving.engine.types import SamplingParams

Sampler = Callable[[mx.array], mx.array]
# Below this, sampling is greedy: 1/temperature would overflow float32 to inf, and the logits
# to NaN, whose "sample" is no token of the vocabulary.
MIN_TEMPERATURE = 1e-5


def make_request_sampler(params: SamplingParams) -> Sampler | None:
    """None means greedy, which the batch samples for all greedy rows in one call."""
    if params.temperature < MIN_TEMPERATURE:
        return None
    seed = params.engine_seed()
    key = mx.random.key(seed if seed is not None else int.from_bytes(os.urandom(8), "little"))
    inv_temp = 1.0 / params.temperature
    top_p = params.top_p

    def sample(logprobs: mx.array) -> mx.array:
        nonlocal key
        key, sub = mx.random.split(key)
        if 0.0 < top_p < 1.0:
            logprobs = apply_top_p(logprobs, top_p)
        return mx.random.categorical(logprobs * inv_temp, key=sub)

    return sample
