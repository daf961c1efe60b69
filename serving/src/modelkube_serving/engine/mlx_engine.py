"""The engine thread: it alone touches MLX, and runs continuous batching on mlx-lm.

The asyncio side sends commands through a thread-safe queue; each engine step's
events go back to the event loop in one `call_soon_threadsafe`, so the loop
wakes once per step rather than once per token.
"""

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
from mlx_lm.generate import BatchGenerator, StopSequences
from mlx_lm.models.cache import LRUPromptCache, can_trim_prompt_cache, trim_prompt_cache

from modelkube_serving.engine.loading import context_length, load_model
from modelkube_serving.engine.output import OutputState
from modelkube_serving.engine.sampling import make_request_sampler
from modelkube_serving.engine.types import (
    EngineEvent,
    EventSink,
    Finished,
    FinishReason,
    GenerationRequest,
    TextDelta,
    TokenLogprob,
)
from modelkube_serving.metrics import RuntimeMetrics

log = logging.getLogger(__name__)

_CACHE_KEY = "base"  # one model per engine; adapters will key their own entries
_IDLE_POLL_S = 0.25


@dataclass(frozen=True)
class EngineSettings:
    max_batch_size: int = 32
    prefill_batch_size: int = 8
    prefix_cache_entries: int = 64
    prefix_cache_bytes: int = 1 << 30


@dataclass
class _Running:
    request: GenerationRequest
    sink: EventSink
    output: OutputState
    cached_tokens: int


@dataclass
class _Outbox:
    """Events of one engine step, delivered together on the event loop."""

    items: list[tuple[EventSink, EngineEvent]] = field(default_factory=list)

    def add(self, sink: EventSink, event: EngineEvent) -> None:
        self.items.append((sink, event))


def _deliver(items: list[tuple[EventSink, EngineEvent]]) -> None:
    for sink, event in items:
        sink(event)


class MLXEngine:
    def __init__(
        self, model_path: Path, model_name: str, settings: EngineSettings, metrics: RuntimeMetrics
    ) -> None:
        self.model_name = model_name
        self.context_length = context_length(model_path)
        self._path = model_path
        self._settings = settings
        self._metrics = metrics
        self._commands: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._loaded = threading.Event()
        self._load_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tokenizer: Any = None
        self._running: dict[int, _Running] = {}
        self._uids: dict[str, int] = {}

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
        return self._loaded.is_set() and self._load_error is None

    def stop(self, timeout: float = 10.0) -> None:
        self._commands.put(("stop",))
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the Engine protocol --------------------------------------------------------
    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        tokens: list[int] = self._tokenizer.apply_chat_template(
            messages, add_generation_prompt=True
        )
        return list(tokens)

    def encode(self, text: str) -> list[int]:
        tokens: list[int] = self._tokenizer.encode(text)
        return tokens

    def submit(self, request: GenerationRequest, sink: EventSink) -> None:
        self._commands.put(("submit", request, sink))

    def cancel(self, request_id: str) -> None:
        self._commands.put(("cancel", request_id))

    # -- the engine thread -------------------------------------------------------------
    def _run(self, on_loaded: Callable[[BaseException | None], None]) -> None:
        try:
            model, self._tokenizer = load_model(self._path)
            generator = BatchGenerator(
                model,
                stop_tokens=[[t] for t in self._tokenizer.eos_token_ids],
                completion_batch_size=self._settings.max_batch_size,
                prefill_batch_size=min(
                    self._settings.prefill_batch_size, self._settings.max_batch_size
                ),
            )
        except Exception as exc:  # reported to the app, which exits with one line
            self._load_error = exc
            self._loaded.set()
            self._call_soon(on_loaded, exc)
            return
        self._loaded.set()
        self._call_soon(on_loaded, None)
        prefix_cache = LRUPromptCache(
            max_size=self._settings.prefix_cache_entries,
            max_bytes=self._settings.prefix_cache_bytes,
        )
        step = _Step(self, generator, prefix_cache)
        try:
            while step.handle_commands(block=not self._running):
                if self._running:
                    step.decode()
        finally:
            step.cancel_all()
            generator.close()

    def _call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)


class _Step:
    """The engine thread's work, split out of the thread body for readability."""

    def __init__(self, engine: MLXEngine, generator: BatchGenerator, cache: LRUPromptCache) -> None:
        self.e = engine
        self.gen = generator
        self.cache = cache
        self.labels = {"model": engine.model_name}

    def handle_commands(self, block: bool) -> bool:
        """Apply every queued command; False once asked to stop."""
        outbox = _Outbox()
        try:
            command = (
                self.e._commands.get(timeout=_IDLE_POLL_S)
                if block
                else self.e._commands.get_nowait()
            )
            while True:
                if command[0] == "stop":
                    self._flush(outbox)
                    return False
                if command[0] == "submit":
                    self._admit(command[1], command[2], outbox)
                else:
                    self._cancel(command[1], outbox)
                command = self.e._commands.get_nowait()
        except queue.Empty:
            pass
        self._flush(outbox)
        return True

    def _admit(self, request: GenerationRequest, sink: EventSink, outbox: _Outbox) -> None:
        prompt = request.prompt_tokens
        cache, rest = self.cache.fetch_nearest_cache(_CACHE_KEY, prompt)
        if cache is not None and not rest:
            # An exact hit still needs the last prompt token fed to start decoding.
            if can_trim_prompt_cache(cache):
                trim_prompt_cache(cache, 1)
                rest = prompt[-1:]
            else:
                cache, rest = None, prompt
        cached = len(prompt) - len(rest)
        if cached:
            self.e._metrics.cache_hits.labels(**self.labels).inc()
            self.e._metrics.cache_hit_tokens.labels(**self.labels).inc(cached)
        try:
            (uid,) = self.gen.insert(
                [rest],
                max_tokens=[request.max_tokens],
                caches=[cache],
                all_tokens=[prompt[:cached]],
                samplers=[make_request_sampler(request.sampling)],
                stop_sequences=[StopSequences()] if request.ignore_eos else None,
            )
        except ValueError as exc:
            outbox.add(sink, Finished("error", len(prompt), 0, 0, error=str(exc)))
            return
        output = OutputState(self.e._tokenizer.detokenizer, request.stop)
        self.e._running[uid] = _Running(request, sink, output, cached)
        self.e._uids[request.request_id] = uid

    def _cancel(self, request_id: str, outbox: _Outbox) -> None:
        uid = self.e._uids.get(request_id)
        if uid is None:
            return
        self.gen.remove([uid])
        self._finish(uid, "cancelled", outbox)

    def decode(self) -> None:
        _, responses = self.gen.next()
        if not responses:
            return
        self.e._metrics.batch_size.labels(**self.labels).observe(len(responses))
        outbox = _Outbox()
        stopped: list[int] = []
        for r in responses:
            running = self.e._running.get(r.uid)
            if running is None:
                continue
            eos = r.finish_reason == "stop"
            match = running.output.push(None if eos else r.token, r.finish_reason is not None)
            logprobs = () if eos else self._logprobs(running.request, r.token, r.logprobs)
            if match.emit or logprobs:
                tokens, running.output.pending_tokens = running.output.pending_tokens, 0
                outbox.add(running.sink, TextDelta(match.emit, tokens, logprobs))
            if r.finish_reason is not None:
                self.cache.insert_cache(_CACHE_KEY, r.all_tokens[:], r.prompt_cache)
                self._finish(r.uid, r.finish_reason, outbox)
            elif match.stopped:
                stopped.append(r.uid)
        if stopped:
            for cache, tokens in self.gen.remove(stopped, return_prompt_caches=True).values():
                self.cache.insert_cache(_CACHE_KEY, tokens[:], cache)
            for uid in stopped:
                self._finish(uid, "stop", outbox)
        self._flush(outbox)

    def _logprobs(
        self, request: GenerationRequest, token: int, row: mx.array
    ) -> tuple[TokenLogprob, ...]:
        if not request.logprobs:
            return ()
        decode = self.e._tokenizer.decode
        top: tuple[tuple[str, float], ...] = ()
        if request.top_logprobs:
            k = request.top_logprobs
            ids = mx.argpartition(-row, k - 1)[:k]
            order = mx.argsort(-row[ids])
            top_ids = cast(list[int], ids[order].tolist())
            top_values = cast(list[float], row[ids][order].tolist())
            top = tuple((decode([i]), v) for i, v in zip(top_ids, top_values, strict=True))
        return (TokenLogprob(decode([token]), cast(float, row[token].item()), top),)

    def _finish(self, uid: int, reason: FinishReason, outbox: _Outbox) -> None:
        running = self.e._running.pop(uid)
        self.e._uids.pop(running.request.request_id, None)
        outbox.add(
            running.sink,
            Finished(
                reason,
                len(running.request.prompt_tokens),
                running.output.completion_tokens,
                running.cached_tokens,
            ),
        )

    def cancel_all(self) -> None:
        outbox = _Outbox()
        for uid in list(self.e._running):
            self._finish(uid, "cancelled", outbox)
        self._flush(outbox)

    def _flush(self, outbox: _Outbox) -> None:
        if outbox.items:
            self.e._call_soon(_deliver, outbox.items)
