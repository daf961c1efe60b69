"""What every engine shares: one thread owns the model, commands reach it through a queue,
and each step's events go back to the event loop in one `call_soon_threadsafe`.

An engine subclasses ThreadedEngine and says how its model loads (on the engine thread) and
how it tokenizes; the command loop, adapters' bookkeeping and lifecycle are here, once.
"""

import asyncio
import logging
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelkube_native import (
    Grammar,
    GrammarCompiler,
    GrammarError,
    InvalidGrammarError,
    RenderSpec,
)

from modelkube_serving.engine.engine_loop import Commands, EngineLoop, LoadDone, VariantLoop
from modelkube_serving.engine.intake import Intake
from modelkube_serving.engine.types import FEATURES, EngineEvent, EventSink, GenerationRequest

log = logging.getLogger(__name__)


def _deliver(items: list[tuple[EventSink, EngineEvent]]) -> None:
    for sink, event in items:
        sink(event)


class ThreadedEngine(ABC):
    kind: str  # "mlx" or "llamacpp": what modelkube_engine_info says
    features: frozenset[str] = FEATURES
    # The most choices (`n`) one request may have; None: as many as the API allows.
    max_choices: int | None = None
    model_name: str
    context_length: int
    vocab_size: int

    def __init__(self, model_path: Path, model_name: str) -> None:
        self.model_name = model_name
        self._path = model_path
        self._commands: Commands = queue.SimpleQueue()
        # Requests on their way here through the HTTP layer (counted there, read by the loop).
        self.intake = Intake()
        self._loaded = threading.Event()
        self._load_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tokenizer: Any = None
        self._grammars: GrammarCompiler | None = None
        # Whether the chat template takes `tools` (else the fallback system prompt shows them).
        self.template_tools = False
        # Event-loop side: adapters that take requests, and loads not answered yet.
        self._servable: set[str] = set()
        self._loading: dict[str, object] = {}

    # -- what an engine says -------------------------------------------------------------
    @abstractmethod
    def _load(self) -> VariantLoop:
        """Load the model on the engine thread: the base variant's loop (and the tokenizer)."""

    @abstractmethod
    def _make_variant(self, adapter: str, path: Path) -> VariantLoop:
        """An adapter's loop, built on the engine thread; raises when it cannot load."""

    @abstractmethod
    def prefix_cache_usage(self) -> float:
        """The prefix caches' use over their budget, 0..1; read from any thread."""

    @abstractmethod
    def _release_thread(self) -> None:
        """Free what the engine's library holds per thread, on the engine thread as it ends."""

    def waiting_requests(self) -> int:
        """Requests waiting inside the engine for room to start: none where every admitted
        request joins the batch at once."""
        return 0

    # -- lifecycle, called from the event loop -------------------------------------
    def start(
        self, loop: asyncio.AbstractEventLoop, on_loaded: Callable[[BaseException | None], None]
    ) -> None:
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run, args=(on_loaded,), name=f"{self.kind}-engine", daemon=True
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
            self._serve(on_loaded)
        finally:
            self._release_thread()

    def _serve(self, on_loaded: Callable[[BaseException | None], None]) -> None:
        try:
            base = self._load()
        except Exception as exc:  # reported to the app, which exits with one line
            self._load_error = exc
            self._loaded.set()
            self._call_soon(on_loaded, exc)
            return
        self._loaded.set()
        self._call_soon(on_loaded, None)
        intake = self.intake
        loop = EngineLoop(base, self._make_variant, self._deliver, lambda: intake.on_the_way)
        loop.run(self._commands)

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

    def _deliver(self, items: list[tuple[EventSink, EngineEvent]]) -> None:
        self._call_soon(_deliver, items)

    def _call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)
