"""OpenAI's `presence_penalty`, `frequency_penalty` and `logit_bias` as mlx-lm logits processors.

OpenAI's semantics (https://platform.openai.com/docs/advanced-usage#frequency-and-presence-
penalties): `logit[j] -= c[j] * frequency + (c[j] > 0) * presence`, where `c[j]` counts token `j`
among every token generated so far in this choice, and the prompt does not count. mlx-lm's own
processors look back 20 tokens and count the prompt too, so these keep their own counts.

Everything stays lazy on the MLX graph (no `.item()`), so a row with penalties adds no sync to
the step; rows without these fields get no processor and pay nothing.
"""

from collections.abc import Callable

import mlx.core as mx

from modelkube_serving.engine.types import SamplingParams

# A bias of -100 bans the token, as OpenAI documents; adding -100 to a logit does not always.
BAN = -100.0


class PenaltyProcessor:
    """`(tokens so far, logits) -> logits` for one choice, counting what it generated."""

    def __init__(self, presence: float, frequency: float) -> None:
        self.presence = presence
        self.frequency = frequency
        # None until the first call, which sees the prompt's last token: no generated token.
        # Each later call sees the token the call before sampled.
        self.counts: mx.array | None = None

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        if self.counts is None:
            self.counts = mx.zeros((logits.shape[-1],), dtype=mx.float32)
        else:
            self.counts = self.counts.at[tokens[-1:]].add(1.0)
        seen = (self.counts > 0).astype(mx.float32)
        penalty = self.counts * self.frequency + seen * self.presence
        return logits - penalty.astype(logits.dtype)


class BiasProcessor:
    """`logit_bias`: a constant added to the biased tokens' logits; -100 bans a token."""

    def __init__(self, biases: dict[int, float]) -> None:
        self.ids = mx.array(list(biases), dtype=mx.int32)
        values = [-mx.inf if v <= BAN else v for v in biases.values()]
        self.values = mx.array(values, dtype=mx.float32)

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        return logits.at[:, self.ids].add(self.values.astype(logits.dtype))


LogitsProcessor = Callable[[mx.array, mx.array], mx.array]


def sampling_processors(params: SamplingParams) -> list[LogitsProcessor]:
    """The processors a choice's sampling fields need: none when they are all neutral."""
    processors: list[LogitsProcessor] = []
    if params.logit_bias:
        processors.append(BiasProcessor(dict(params.logit_bias)))
    if params.presence_penalty or params.frequency_penalty:
        processors.append(PenaltyProcessor(params.presence_penalty, params.frequency_penalty))
    return processors
