"""What the service layer hands the engine, and what the engine hands back."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    prompt_tokens: list[int]
    max_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    ignore_eos: bool = False
    # How the output path renders the response: chunk kind, SSE frames, the usage chunk.
    chat: bool = True
    stream: bool = False
    include_usage: bool = False
    created: int = 0
    # Which variant generates it: an adapter's name, or "" for the base model.
    adapter: str = ""


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class TextDelta:
    text: str
    tokens: int
    logprobs: tuple[TokenLogprob, ...] = ()
    # The SSE bytes for this delta, rendered by the native output path (streaming requests
    # without logprobs).
    frame: bytes | None = None


@dataclass(frozen=True)
class Finished:
    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    error: str | None = None
    # Non-streaming: the whole text. Streaming: the SSE bytes of the last delta, the finish
    # chunk and (if asked) the usage chunk, when the output path renders frames.
    text: str | None = None
    frame: bytes | None = None


EngineEvent = TextDelta | Finished
EventSink = Callable[[EngineEvent], None]


class Engine(Protocol):
    """What the services need from an engine; the MLX engine is the implementation."""

    model_name: str
    context_length: int
    vocab_size: int

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]: ...

    def encode(self, text: str) -> list[int]: ...

    def submit(self, request: GenerationRequest, sink: EventSink) -> None: ...

    def cancel(self, request_id: str) -> None: ...

    def serves(self, adapter: str) -> bool:
        """Whether new requests for this adapter ("" is the base model) are taken."""
        ...

    def served_adapters(self) -> list[str]: ...
