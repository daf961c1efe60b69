"""What the service layer hands the engine, and what the engine hands back."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from modelkube_native import FinishReason, Grammar, RenderSpec

from modelkube_serving.engine.intake import Intake

# Request features an engine may lack, named by the request parameter that asks for them.
FEATURES = frozenset(
    {"logprobs", "response_format", "n", "presence_penalty", "frequency_penalty", "logit_bias"}
)

_UINT64 = (1 << 64) - 1

# A request ends with OpenAI's finish reason, or did not end normally.
Outcome = FinishReason | Literal["cancelled", "error"]


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    # OpenAI's penalties, over every token this choice generated (0: none).
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # (token id, bias) pairs; a bias of -100 bans the token.
    logit_bias: tuple[tuple[int, float], ...] = ()

    def for_choice(self, index: int) -> "SamplingParams":
        """Choice `index` of several: a seeded request stays reproducible, and its choices
        still differ."""
        if self.seed is None or index == 0:
            return self
        return replace(self, seed=self.seed + index)

    def engine_seed(self) -> int | None:
        """The seed as both engines' generators take it, a uint64: OpenAI allows any int64
        (a negative one raised on the engine thread), and two's complement keeps each distinct."""
        return None if self.seed is None else self.seed & _UINT64


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
    # Special tokens (end of text, turn markers) are no text unless asked for.
    skip_special_tokens: bool = True
    # Which variant generates it: an adapter's name, or "" for the base model.
    adapter: str = ""
    # `response_format`'s compiled grammar: the output is constrained to it (None: free text).
    grammar: Grammar | None = None
    # How many choices (`n`): each a row of the batch, all from one prefill of the prompt.
    n: int = 1


@dataclass(frozen=True)
class TextDelta:
    tokens: int
    # What to write to the client, rendered by the native output path: SSE chunks when
    # streaming; None when there is nothing yet, and always when not streaming.
    data: bytes | None = None
    index: int = 0  # which choice


@dataclass(frozen=True)
class Finished:
    reason: Outcome
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    error: str | None = None
    # The last bytes to write: streaming, the last chunks (finish, usage, [DONE]); not
    # streaming, the whole JSON response. None when it did not finish normally. One of several
    # choices: streaming, its finish chunk; not streaming, its choice object.
    data: bytes | None = None
    index: int = 0  # which choice


EngineEvent = TextDelta | Finished
EventSink = Callable[[EngineEvent], None]


class Engine(Protocol):
    """What the runtime needs from an engine, and all it knows of one: MLX (mlx_engine) and
    llama.cpp (llamacpp_engine) implement it, and nothing above the engine names either."""

    kind: str  # "mlx" or "llamacpp"
    # Request features it serves, of FEATURES; the service answers a 400 for the others.
    features: frozenset[str]
    # The most choices (`n`) one request may have (None: as many as the API allows).
    max_choices: int | None
    model_name: str
    context_length: int
    vocab_size: int
    # Whether the model's chat template takes a `tools` variable (else tools are shown to the
    # model through the fallback system prompt).
    template_tools: bool
    # Requests on their way to it through the HTTP layer (intake.py).
    intake: Intake

    def start(
        self, loop: asyncio.AbstractEventLoop, on_loaded: Callable[[BaseException | None], None]
    ) -> None:
        """Load the model on the engine's own thread; `on_loaded` runs on `loop` after."""
        ...

    def stop(self, timeout: float = 10.0) -> None: ...

    @property
    def ready(self) -> bool: ...

    @property
    def alive(self) -> bool: ...

    def prefix_cache_usage(self) -> float:
        """The prefix cache's use over its budget, 0..1; read from any thread."""
        ...

    def waiting_requests(self) -> int:
        """Requests admitted but waiting inside the engine for room to start (llama.cpp's
        sequences); read from any thread."""
        ...

    def load_adapter(self, name: str, path: Path, done: Callable[[str | None], None]) -> None:
        """Load (or reload) adapter `name`; `done` gets None or the reason it failed."""
        ...

    def unload_adapter(self, name: str) -> None: ...

    def encode_chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]: ...

    def encode(self, text: str) -> list[int]: ...

    def grammar(self, schema: str | None) -> Grammar:
        """The compiled grammar of a JSON schema's text (None: any JSON object); raises
        InvalidGrammarError when it cannot compile."""
        ...

    def lark(self, grammar: str) -> Grammar:
        """The compiled grammar of a Lark grammar's text (llguidance's dialect)."""
        ...

    def submit(self, request: GenerationRequest, render: RenderSpec, sink: EventSink) -> None:
        """Generate `request`; its response is rendered as `render` says."""
        ...

    def cancel(self, request_id: str) -> None: ...

    def serves(self, adapter: str) -> bool:
        """Whether new requests for this adapter ("" is the base model) are taken."""
        ...

    def served_adapters(self) -> list[str]: ...
