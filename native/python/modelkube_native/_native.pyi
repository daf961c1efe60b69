"""Type stubs of the compiled module; `mypy.stubtest` checks them against it."""

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import ClassVar, final

__all__ = [
    "Admission",
    "FinishReason",
    "Gate",
    "Grammar",
    "GrammarCompiler",
    "GrammarMatcher",
    "HttpFront",
    "LlamaEngine",
    "LoopHub",
    "OutputPath",
    "PrefixIndex",
    "RenderSpec",
    "StepResult",
    "UpstreamClient",
    "UpstreamResponse",
    "UpstreamStream",
    "Vocabulary",
    "__version__",
    "error_frame",
]

__version__: str

@final
class Vocabulary:
    """A model's vocabulary from its `tokenizer.json`, shared by every request."""

    def __new__(cls, path: str) -> Vocabulary: ...
    @property
    def size(self) -> int: ...
    def decode(
        self, ids: list[int], strict: bool = False, skip_special_tokens: bool = True
    ) -> str: ...

@final
class FinishReason:
    """Why a completion ended: OpenAI's `finish_reason`."""

    STOP: ClassVar[FinishReason]
    LENGTH: ClassVar[FinishReason]
    TOOL_CALLS: ClassVar[FinishReason]
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __int__(self) -> int: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

@final
class RenderSpec:
    """How one request's response is rendered, decided by the service from the request."""

    def __new__(
        cls,
        request_id: str,
        model: str,
        *,
        chat: bool,
        stream: bool,
        created: int,
        include_usage: bool = False,
        logprobs: bool = False,
        top_logprobs: int = 0,
        choices: int = 1,
        tools: bool = False,
    ) -> RenderSpec: ...
    @property
    def request_id(self) -> str: ...
    @property
    def stream(self) -> bool: ...
    @property
    def index(self) -> int: ...
    @property
    def choices(self) -> int: ...
    def for_choice(self, index: int) -> RenderSpec:
        """The same response's choice `index` (0 <= index < choices)."""
    def start(self) -> bytes: ...
    def close(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> bytes:
        """The end of a stream of several choices: the usage chunk (when asked for), `[DONE]`."""
    def join(
        self, choices: list[bytes], prompt_tokens: int, completion_tokens: int, cached_tokens: int
    ) -> bytes:
        """The body of a response of several choices, from each choice's object in order."""

def error_frame(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> bytes:
    """An error in the middle of a stream: an OpenAI error body as an SSE data frame."""

@final
class StepResult:
    """One request's report after a step."""

    @property
    def handle(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def data(self) -> bytes | None: ...
    @property
    def finish(self) -> FinishReason | None: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def tokens(self) -> int: ...

@final
class OutputPath:
    """Every running request's detokenizer, stop strings, logprobs and rendering."""

    def __new__(cls, vocabulary: Vocabulary, strict_utf8: bool = False) -> OutputPath: ...
    def add(
        self,
        handle: int,
        render: RenderSpec,
        *,
        stops: list[str] = ...,
        prompt_tokens: int = 0,
        cached_tokens: int = 0,
        skip_special_tokens: bool = True,
    ) -> None: ...
    def discard(self, handle: int) -> None: ...
    def step(
        self,
        inputs: list[
            tuple[int, int | None, FinishReason | None, tuple[float, list[int], list[float]] | None]
        ],
    ) -> list[StepResult]:
        """One engine step for the whole batch: per request (handle, token or None, finish or
        None, (logprob, top ids, top logprobs) or None); a result for each with news."""
    def __len__(self) -> int: ...

@final
class LlamaEngine:
    """llama.cpp on one GGUF file: continuous batching over its sequences, each step decoded,
    sampled and rendered through an OutputPath with the GIL released."""

    def __new__(
        cls,
        path: str | os.PathLike[str],
        *,
        context_length: int,
        n_batch: int = 512,
        n_seq_max: int = 16,
        n_threads: int = 1,
    ) -> LlamaEngine: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def context_length(self) -> int: ...
    @property
    def context_length_trained(self) -> int: ...
    @property
    def running(self) -> int: ...
    @property
    def free_sequences(self) -> int:
        """Sequences no request holds: a request of `n` choices starts only with `n` free."""
    @property
    def sequences(self) -> int:
        """Sequences in all: the most choices one request may have."""
    @property
    def kv_cache_usage(self) -> float:
        """Cells holding tokens (running and kept for reuse) over all cells, 0..1; read
        without waiting for a step."""
    def add(
        self,
        handle: int,
        prompt: list[int],
        *,
        max_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        ignore_eos: bool = False,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        logit_bias: list[tuple[int, float]] = ...,
        logprobs: int | None = None,
        grammar: Grammar | None = None,
        adapter: int = 0,
        others: list[tuple[int, int | None]] = ...,
    ) -> int:
        """Starts a request; how many of its prompt tokens its sequence's cache already held.
        `logprobs`: alternatives reported with each token's logprob (None: no logprobs);
        `grammar`: the output is constrained to it; `others`: the (handle, seed) of each
        further choice, all from one prefill of the prompt."""
        ...
    def load_adapter(self, path: str | os.PathLike[str]) -> int:
        """Loads a GGUF LoRA file; its id for `add` and `step` (0 is the base)."""
    def free_adapter(self, adapter: int) -> bool: ...
    def generate_greedy(self, prompt: list[int], max_tokens: int) -> list[int]:
        """Greedy token ids for one prompt with nothing else running."""
    def cancel(self, handle: int) -> bool: ...
    def clear(self, adapter: int | None = None) -> list[int]: ...
    def step(self, output: OutputPath, adapter: int = 0) -> list[StepResult]:
        """One decode over the running requests of `adapter` (0: the base); a result for each
        with news. A request a stop string ends is ended in llama.cpp too."""

@final
class Admission:
    """Fair, bounded admission with deadlines and per-key rate limits."""

    def __new__(
        cls,
        max_running: int,
        max_queued: int,
        *,
        quantum: int = 512,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> Admission: ...
    def submit(
        self, ticket: int, key: str, priority: int, cost: int, deadline: float, now: float
    ) -> bool: ...
    def cancel(self, ticket: int) -> bool: ...
    def release(self, now: float) -> tuple[int | None, list[int]]: ...
    def expire(self, now: float) -> list[int]: ...
    @property
    def running(self) -> int: ...
    @property
    def queued(self) -> int: ...

@final
class GrammarCompiler:
    """One model's grammar compiler, with its cache of compiled grammars by schema text."""

    def __new__(cls, path: str, eos_tokens: list[int], vocab_size: int) -> GrammarCompiler: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def cached(self) -> int: ...
    def json_object(self) -> Grammar: ...
    def json_schema(self, schema: str) -> Grammar: ...
    def lark(self, grammar: str) -> Grammar: ...

@final
class Grammar:
    """A compiled grammar; each request follows it with its own matcher."""

    @property
    def compile_us(self) -> int: ...
    def matcher(self) -> GrammarMatcher: ...

@final
class GrammarMatcher:
    """One request's position in its grammar."""

    def mask(self) -> bytes: ...
    def consume(self, token: int) -> None: ...
    @property
    def is_stopped(self) -> bool: ...
    def is_accepting(self) -> bool: ...

@final
class PrefixIndex:
    """The prefix cache's index: longest cached prefix of a prompt, LRU eviction by bytes."""

    def __new__(cls, max_bytes: int, max_entries: int = 2147483648) -> PrefixIndex: ...
    def insert(self, tokens: list[int], handle: int, nbytes: int) -> list[int]: ...
    def longest_prefix(self, tokens: list[int]) -> tuple[int, int] | None: ...
    def longest_common(self, tokens: list[int]) -> tuple[int, int] | None: ...
    def remove_prefixes(self, tokens: list[int]) -> list[int]: ...
    def remove(self, handle: int) -> bool: ...
    def __len__(self) -> int: ...
    @property
    def bytes(self) -> int: ...

@final
class UpstreamClient:
    """An upstream provider's HTTP API: pooled, retried with backoff, behind a breaker."""

    def __new__(
        cls,
        base_url: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        connect_timeout_s: float = 5.0,
        response_timeout_s: float = 60.0,
        read_timeout_s: float = 300.0,
        max_retries: int = 2,
        backoff_base_s: float = 0.1,
        backoff_max_s: float = 5.0,
        breaker_failures: int = 5,
        breaker_cooldown_s: float = 10.0,
        pool_max_idle_per_host: int = 64,
        ca_file: str | os.PathLike[str] | None = None,
    ) -> UpstreamClient: ...
    @property
    def base_url(self) -> str: ...
    @property
    def breaker_state(self) -> str: ...
    def counters(self) -> tuple[int, int]: ...
    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> UpstreamResponse: ...
    def arequest(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> Awaitable[UpstreamResponse]: ...
    def stream(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> UpstreamStream: ...
    def astream(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> Awaitable[UpstreamStream]: ...

# What an HttpFront's router answers a POST with: the client to relay it through, or
# (status, JSON body) to answer it at once.
# Relay through the client (calling `done(status)` once when the relay is over), answer as is,
# or None: relay to the fallback.
_Routed = UpstreamClient | tuple[UpstreamClient, Callable[[int], object]] | tuple[int, bytes] | None

@final
class Gate:
    """One holder at a time, handed to the waiters in the order they asked."""

    def __new__(cls) -> Gate: ...
    def acquire(self) -> None: ...
    def release(self) -> None: ...

@final
class HttpFront:
    """An HTTP/1.1 server on the core's runtime whose requests
    `router(method, path, authorization, body)` routes, called on the tokio thread that read
    each one (holding `gate` if given); relayed answers stream through as the upstream writes
    them; what the router leaves (None), or routes to an upstream that cannot be reached or
    is draining, goes to `fallback`."""

    def __new__(
        cls,
        host: str,
        port: int,
        router: Callable[[str, str, str | None, bytes], _Routed],
        gate: Gate | None = None,
        fallback: UpstreamClient | None = None,
    ) -> HttpFront: ...
    @property
    def port(self) -> int: ...
    def close(self) -> None: ...

@final
class UpstreamResponse:
    """A whole answer: status, headers (lower-case names) and body."""

    @property
    def status(self) -> int: ...
    @property
    def attempts(self) -> int: ...
    @property
    def headers(self) -> dict[str, str]: ...
    @property
    def body(self) -> bytes: ...

@final
class UpstreamStream:
    """An answer whose body arrives chunk by chunk."""

    @property
    def status(self) -> int: ...
    @property
    def attempts(self) -> int: ...
    @property
    def headers(self) -> dict[str, str]: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def __aiter__(self) -> AsyncIterator[bytes]: ...
    def __anext__(self) -> Awaitable[bytes]: ...
    def close(self) -> None: ...

@final
class LoopHub:
    """An event loop's queue of the native awaitables' results, and the socket that wakes it:
    registered as the loop's reader when the first one is awaited there."""

    def drain(self) -> None: ...
