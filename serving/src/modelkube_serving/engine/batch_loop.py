"""One model variant's batch: admits, decodes and cancels requests on one BatchGenerator.

Everything here runs on the engine thread, and the loop alone owns its requests' state. Each
step's tokens go through the native output path in one call: detokenized, stop strings
applied, SSE frames rendered.
"""

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import mlx.core as mx
from mlx_lm.generate import BatchGenerator, StopSequences
from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache
from modelkube_native import OutputPath

from modelkube_serving.engine.prompt_cache import PromptCache
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

Deliver = Callable[[list[tuple[EventSink, EngineEvent]]], None]


@dataclass
class _Running:
    request: GenerationRequest
    sink: EventSink
    cached_tokens: int
    completion_tokens: int = 0


@dataclass
class Outbox:
    """Events of one engine step, delivered together on the event loop."""

    items: list[tuple[EventSink, EngineEvent]] = field(default_factory=list)

    def add(self, sink: EventSink, event: EngineEvent) -> None:
        self.items.append((sink, event))


class BatchLoop:
    def __init__(
        self,
        generator: BatchGenerator,
        cache: PromptCache,
        tokenizer: Any,
        output: OutputPath,
        metrics: RuntimeMetrics,
        model_name: str,
        deliver: Deliver,
    ) -> None:
        self.gen = generator
        self.cache = cache
        self.tokenizer = tokenizer
        self.output = output
        self.metrics = metrics
        self.labels = {"model": model_name}
        self.deliver = deliver
        self.running: dict[int, _Running] = {}
        self.uids: dict[str, int] = {}

    def step(self) -> None:
        """Decode one step; a failing step fails the requests in the batch, never the thread
        serving the rest."""
        try:
            self.decode()
        except Exception as exc:
            log.exception(
                "engine step failed; failing the %d requests in the batch", len(self.running)
            )
            uids = list(self.running)
            with contextlib.suppress(Exception):
                self.gen.remove(uids)
            outbox = Outbox()
            for uid in uids:
                self._finish(uid, "error", outbox, error=f"generation failed: {exc}")
            self.flush(outbox)

    def admit(self, request: GenerationRequest, sink: EventSink, outbox: Outbox) -> None:
        prompt = request.prompt_tokens
        cache, rest = self.cache.fetch_nearest_cache(prompt)
        if cache is not None and not rest:
            # An exact hit still needs the last prompt token fed to start decoding.
            if can_trim_prompt_cache(cache):
                trim_prompt_cache(cache, 1)
                rest = prompt[-1:]
            else:
                cache, rest = None, prompt
        cached = len(prompt) - len(rest)
        if cached:
            self.metrics.cache_hits.labels(**self.labels).inc()
            self.metrics.cache_hit_tokens.labels(**self.labels).inc(cached)
        try:
            (uid,) = self.gen.insert(
                [rest],
                max_tokens=[request.max_tokens],
                caches=[cache],
                all_tokens=[prompt[:cached]],
                samplers=[make_request_sampler(request.sampling)],
                stop_sequences=[StopSequences()] if request.ignore_eos else None,
            )
        except Exception as exc:  # this request fails; the thread serves the others
            log.exception("request %s: cannot start generating", request.request_id)
            outbox.add(sink, Finished("error", len(prompt), 0, 0, error=str(exc)))
            return
        self.output.add(
            uid,
            request.request_id,
            chat=request.chat,
            stream=request.stream,
            created=request.created,
            frames=not request.logprobs,  # logprob chunks are rendered by the service
            include_usage=request.include_usage,
            stops=list(request.stop),
            prompt_tokens=len(prompt),
            cached_tokens=cached,
        )
        self.running[uid] = _Running(request, sink, cached)
        self.uids[request.request_id] = uid

    def cancel(self, request_id: str, outbox: Outbox) -> bool:
        """False when the request is not in this batch."""
        uid = self.uids.get(request_id)
        if uid is None:
            return False
        self.gen.remove([uid])
        self._finish(uid, "cancelled", outbox)
        return True

    def decode(self) -> None:
        _, responses = self.gen.next()
        if not responses:
            return
        self.metrics.batch_size.labels(**self.labels).observe(len(responses))
        outbox = Outbox()
        steps: list[tuple[int, int | None, str | None]] = []
        logprobs: dict[int, tuple[TokenLogprob, ...]] = {}
        done: dict[int, Any] = {}
        for r in responses:
            running = self.running.get(r.uid)
            if running is None:
                continue
            eos = r.finish_reason == "stop"
            steps.append((r.uid, None if eos else r.token, r.finish_reason))
            if running.request.logprobs and not eos:
                logprobs[r.uid] = self._logprobs(running.request, r.token, r.logprobs)
            if r.finish_reason is not None:
                done[r.uid] = r
        stopped: dict[int, tuple[str, bytes | None]] = {}
        for uid, text, frame, finish, completion_tokens, tokens in self.output.step(steps):
            running = self.running[uid]
            running.completion_tokens = completion_tokens
            lp = logprobs.pop(uid, ())
            if finish is None:
                outbox.add(running.sink, TextDelta(text, tokens, lp, frame))
                continue
            if running.request.stream and frame is None:
                # Logprob chunks are the service's to render: hand it the last delta.
                if text or lp:
                    outbox.add(running.sink, TextDelta(text, tokens, lp))
                text = ""
            elif lp:
                outbox.add(running.sink, TextDelta("", tokens, lp))
            if uid in done:
                r = done[uid]
                self.cache.insert_cache(r.all_tokens[:], r.prompt_cache)
                reason = cast(FinishReason, finish)  # a stop string on the last token says "stop"
                self._finish(uid, reason, outbox, text=text, frame=frame)
            else:
                stopped[uid] = (text, frame)  # a stop string ended it; the batch still has it
        for uid, lp in logprobs.items():  # tokens whose text is held back for now
            outbox.add(self.running[uid].sink, TextDelta("", 0, lp))
        if stopped:
            for cache, tokens in self.gen.remove(stopped, return_prompt_caches=True).values():
                self.cache.insert_cache(tokens[:], cache)
            for uid, (text, frame) in stopped.items():
                self._finish(uid, "stop", outbox, text=text, frame=frame)
        self.flush(outbox)

    def _logprobs(
        self, request: GenerationRequest, token: int, row: mx.array
    ) -> tuple[TokenLogprob, ...]:
        if not request.logprobs:
            return ()
        decode = self.tokenizer.decode
        top: tuple[tuple[str, float], ...] = ()
        if request.top_logprobs:
            k = request.top_logprobs
            ids = mx.argpartition(-row, k - 1)[:k]
            order = mx.argsort(-row[ids])
            top_ids = cast(list[int], ids[order].tolist())
            top_values = cast(list[float], row[ids][order].tolist())
            top = tuple((decode([i]), v) for i, v in zip(top_ids, top_values, strict=True))
        return (TokenLogprob(decode([token]), cast(float, row[token].item()), top),)

    def _finish(
        self,
        uid: int,
        reason: FinishReason,
        outbox: Outbox,
        error: str | None = None,
        text: str | None = None,
        frame: bytes | None = None,
    ) -> None:
        """The request is done; if the output path has not finished it, it is discarded."""
        running = self.running.pop(uid)
        self.uids.pop(running.request.request_id, None)
        if reason in ("cancelled", "error"):
            with contextlib.suppress(KeyError):  # it may never have reached the output path
                self.output.discard(uid)
        outbox.add(
            running.sink,
            Finished(
                reason,
                len(running.request.prompt_tokens),
                running.completion_tokens,
                running.cached_tokens,
                error,
                text=text,
                frame=frame,
            ),
        )

    def cancel_all(self) -> None:
        outbox = Outbox()
        for uid in list(self.running):
            self._finish(uid, "cancelled", outbox)
        self.flush(outbox)

    def close(self) -> None:
        """Cancel what still runs and release the generator; the loop is not used after."""
        try:
            self.cancel_all()
        finally:
            self.gen.close()

    def flush(self, outbox: Outbox) -> None:
        if outbox.items:
            self.deliver(outbox.items)
