"""The engine thread: it alone touches MLX, and runs continuous batching on mlx-lm.

The asyncio side sends commands through a thread-safe queue; each engine step's
events go back to the event loop in one `call_soon_threadsafe`, so the loop
wakes once per step rather than once per token. The base model and every adapter
loaded on it are variants served side by side by one EngineLoop on this thread.
"""

import asyncio
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlx_lm.generate import BatchGenerator
from modelkube_native import (
    Grammar,
    GrammarCompiler,
    GrammarError,
    InvalidGrammarError,
    OutputPath,
    RenderSpec,
    Vocabulary,
)

from modelkube_serving.engine.batch_loop import BatchLoop
from modelkube_serving.engine.chat_template import template_takes_tools
from modelkube_serving.engine.engine_loop import Commands, EngineLoop, LoadDone
from modelkube_serving.engine.loading import context_length, load_model, vocab_size
from modelkube_serving.engine.prompt_cache import PromptCache
from modelkube_serving.engine.types import (
    EngineEvent,
    EventSink,
    GenerationRequest,
)
from modelkube_serving.engine.variants import build_variant
from modelkube_serving.metrics import RuntimeMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSettings:
    max_batch_size: int = 32
    prefill_batch_size: int = 8
    prefix_cache_entries: int = 64
    prefix_cache_bytes: int = 1 << 30


def _deliver(items: list[tuple[EventSink, EngineEvent]]) -> None:
    for sink, event in items:
        sink(event)


class MLXEngine:
    def __init__(
        self, model_path: Path, model_name: str, settings: EngineSettings, metrics: RuntimeMetrics
    ) -> None:
        self.model_name = model_name
        self.context_length = context_length(model_path)
        self.vocab_size = vocab_size(model_path)
        self._path = model_path
        self._settings = settings
        self._metrics = metrics
        self._commands: Commands = queue.SimpleQueue()
        self._loaded = threading.Event()
        self._load_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tokenizer: Any = None
        self._base: Any = None
        self._vocabulary: Vocabulary | None = None
        self._grammars: GrammarCompiler | None = None
        self.template_tools = False
        # Event-loop side: adapters that take requests, and loads not answered yet.
        self._servable: set[str] = set()
        self._caches: list[weakref.ref[PromptCache]] = []  # each live variant's
        self._loading: dict[str, object] = {}

    # -- lifecycle, called from the event loop -------------------------------------
    def start(
        self, loop: asyncio.AbstractEventLoop, on_loaded: Callable[[BaseException | None], None]
    ) -> None:
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run, args=(on_loaded,), name="mlx-engine", daemon=True
        )
        self._thread.start()

    @property
    def ready(self) -> bool:
        """Loaded, and the engine thread still alive to serve (readiness fails otherwise)."""
        alive = self._thread is not None and self._thread.is_alive()
        return self._loaded.is_set() and self._load_error is None and alive

    @property
    def alive(self) -> bool:
        """False once the engine thread has ended after loading: nothing will serve again, so
        the liveness probe fails and Kubernetes restarts the pod."""
        if not self._loaded.is_set() or self._load_error is not None:
            return True  # still loading (a load error ends the process by itself)
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        self._commands.put(("stop",))
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the Engine protocol --------------------------------------------------------
    def encode_chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        tokens: list[int] = self._tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=True
        )
        return list(tokens)

    def encode(self, text: str) -> list[int]:
        tokens: list[int] = self._tokenizer.encode(text)
        return tokens

    def grammar(self, schema: str | None) -> Grammar:
        # Compiling runs without the GIL and is cached by schema text, so a schema seen
        # before costs a lookup; a new one costs milliseconds on the event loop.
        if self._grammars is None:
            raise InvalidGrammarError(
                "response_format json_object and json_schema are not available for this "
                "model: its tokenizer cannot be constrained"
            )
        if schema is None:
            return self._grammars.json_object()
        return self._grammars.json_schema(schema)

    def lark(self, grammar: str) -> Grammar:
        if self._grammars is None:
            raise InvalidGrammarError(
                "tool_choice required and named functions are not available for this model: "
                "its tokenizer cannot be constrained"
            )
        return self._grammars.lark(grammar)

    def submit(self, request: GenerationRequest, render: RenderSpec, sink: EventSink) -> None:
        self._commands.put(("submit", request, render, sink))

    def cancel(self, request_id: str) -> None:
        self._commands.put(("cancel", request_id))

    def serves(self, adapter: str) -> bool:
        return not adapter or adapter in self._servable

    def served_adapters(self) -> list[str]:
        return sorted(self._servable)

    def prefix_cache_usage(self) -> float:
        """The live variants' prefix caches: their bytes over their budget, 0..1. Read from any
        thread: the list is replaced, never changed in place, and the native index locks its
        own count; a released variant's cache drops out as it is freed."""
        caches = [cache for ref in self._caches if (cache := ref()) is not None]
        budget = self._settings.prefix_cache_bytes * len(caches)
        return min(1.0, sum(c.nbytes for c in caches) / budget) if budget else 0.0

    # -- adapters, called from the event loop ---------------------------------------
    def load_adapter(self, name: str, path: Path, done: LoadDone) -> None:
        """Load (or reload) adapter `name`; `done` gets None or the reason it failed. A
        load overtaken by another load or an unload of the same name never calls it."""
        token = object()
        self._loading[name] = token

        def finished(error: str | None) -> None:
            if self._loading.get(name) is not token:
                return
            del self._loading[name]
            if error is None:
                self._servable.add(name)
            else:
                self._servable.discard(name)
            done(error)

        self._commands.put(("load", name, path, lambda e: self._call_soon(finished, e)))

    def unload_adapter(self, name: str) -> None:
        """New requests for it are refused from now on; running ones finish."""
        self._loading.pop(name, None)
        self._servable.discard(name)
        self._commands.put(("unload", name))

    # -- the engine thread -------------------------------------------------------------
    def _run(self, on_loaded: Callable[[BaseException | None], None]) -> None:
        try:
            self._base, self._tokenizer = load_model(self._path)
            self._vocabulary = Vocabulary(str(self._path / "tokenizer.json"))
            self._grammars = self._grammar_compiler()
            self.template_tools = template_takes_tools(self._tokenizer)
            base = self._make_loop(self._base, self.model_name)
        except Exception as exc:  # reported to the app, which exits with one line
            self._load_error = exc
            self._loaded.set()
            self._call_soon(on_loaded, exc)
            return
        self._loaded.set()
        self._call_soon(on_loaded, None)
        EngineLoop(base, self._make_variant, self._deliver).run(self._commands)

    def _grammar_compiler(self) -> GrammarCompiler | None:
        """None when llguidance cannot read this tokenizer (neither byte-level nor byte-fallback
        BPE): the model still serves, and response_format is refused with a 400."""
        try:
            return GrammarCompiler(
                str(self._path / "tokenizer.json"),
                sorted(self._tokenizer.eos_token_ids),  # the first is the one a grammar ends on
                self.vocab_size,
            )
        except GrammarError as exc:
            log.warning("constrained decoding is unavailable for this model: %s", exc)
            return None

    def _make_variant(self, adapter: str, path: Path) -> BatchLoop:
        model = build_variant(self._base, self._path, path)
        return self._make_loop(model, f"{self.model_name}:{adapter}")

    def _make_loop(self, model: Any, name: str) -> BatchLoop:
        """A variant's own generator, prefix cache and output path."""
        assert self._vocabulary is not None
        generator = BatchGenerator(
            model,
            stop_tokens=[[t] for t in self._tokenizer.eos_token_ids],
            completion_batch_size=self._settings.max_batch_size,
            prefill_batch_size=min(
                self._settings.prefill_batch_size, self._settings.max_batch_size
            ),
        )
        prefix_cache = PromptCache(
            max_entries=self._settings.prefix_cache_entries,
            max_bytes=self._settings.prefix_cache_bytes,
        )
        live = [ref for ref in self._caches if ref() is not None]
        self._caches = [*live, weakref.ref(prefix_cache)]
        output = OutputPath(self._vocabulary)
        eos = min(self._tokenizer.eos_token_ids)
        return BatchLoop(
            generator, prefix_cache, output, self._metrics, name, self._deliver, eos_token=eos
        )

    def _deliver(self, items: list[tuple[EventSink, EngineEvent]]) -> None:
        self._call_soon(_deliver, items)

    def _call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)
