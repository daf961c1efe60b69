"""Per-request output state: streaming detokenization and stop strings.

Text that could still turn into a stop string is held back, so a client never
sees text that is later retracted.
"""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StopMatch:
    emit: str
    stopped: bool


def match_stops(pending: str, stops: tuple[str, ...], final: bool) -> StopMatch:
    """Split `pending` into what may be emitted now, and whether a stop string ended it."""
    if not stops:
        return StopMatch(pending, False)
    hits = [i for i in (pending.find(s) for s in stops) if i >= 0]
    if hits:
        return StopMatch(pending[: min(hits)], True)
    if final:
        return StopMatch(pending, False)
    hold = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(pending)), 0, -1):
            if pending.endswith(stop[:n]):
                hold = max(hold, n)
                break
    return StopMatch(pending[: len(pending) - hold], False)


@dataclass
class OutputState:
    detokenizer: Any
    stops: tuple[str, ...]
    emitted_chars: int = 0
    completion_tokens: int = 0
    pending_tokens: int = 0
    logprobs: list[Any] = field(default_factory=list)

    def push(self, token: int | None, final: bool) -> StopMatch:
        """Add a generated token (None: none, e.g. EOS) and return what to emit."""
        if token is not None:
            self.detokenizer.add_token(token)
            self.completion_tokens += 1
            self.pending_tokens += 1
        if final:
            self.detokenizer.finalize()
        text: str = self.detokenizer.text
        match = match_stops(text[self.emitted_chars :], self.stops, final)
        self.emitted_chars += len(match.emit)
        return match
