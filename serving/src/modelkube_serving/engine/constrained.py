"""Constrained decoding on mlx-lm: a logits processor that keeps one request's output inside
its grammar.

The native matcher computes the allowed tokens (without the GIL) as a bitset; here it becomes
a boolean row and disallowed logits become -inf before sampling. Once the grammar is complete
only end-of-sequence is allowed, so the request finishes with "stop". Rows without a grammar
get no processor and pay nothing.
"""

import logging
from typing import cast

import mlx.core as mx
import numpy as np
from modelkube_native import GrammarError, GrammarMatcher

log = logging.getLogger(__name__)


class GrammarProcessor:
    """mlx-lm's `LogitsProcessor` for one request: `(tokens so far, logits) -> logits`."""

    def __init__(self, matcher: GrammarMatcher, eos_token: int) -> None:
        self.matcher = matcher
        self.eos_token = eos_token
        # The first call sees the last prompt token, which the grammar does not follow;
        # each later call sees the token sampled by the call before.
        self.started = False
        self.failed = False

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        width = logits.shape[-1]
        if self.failed:
            return self._only_eos(logits, width)
        if self.matcher.is_stopped:
            # The grammar is complete and the token seen is the end-of-sequence it allowed:
            # mlx-lm runs this row's processors once more before its stop check ends it.
            return self._only_eos(logits, width)
        try:
            if self.started:
                self.matcher.consume(cast(int, tokens[-1].item()))
            self.started = True
            packed = np.frombuffer(self.matcher.mask(), dtype=np.uint8)
        except GrammarError:
            # Never expected (the mask allowed the token); end this request, not the batch.
            log.exception("constrained decoding failed; ending the request")
            self.failed = True
            return self._only_eos(logits, width)
        allowed = np.unpackbits(packed, bitorder="little", count=width).astype(np.bool_)
        return mx.where(mx.array(allowed), logits, -mx.inf)

    def _only_eos(self, logits: mx.array, width: int) -> mx.array:
        allowed = np.zeros(width, dtype=np.bool_)
        allowed[self.eos_token] = True
        return mx.where(mx.array(allowed), logits, -mx.inf)
