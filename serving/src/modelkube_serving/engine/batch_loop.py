"""One model variant's batch: admits, decodes and cancels requests on one BatchGenerator.

Everything here runs on the engine thread, and the loop alone owns its requests' state. Each
step's tokens (and logprobs, computed here from MLX) go through the native output path in one
call: detokenized, stop strings applied, the response rendered.
"""

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import mlx.core as mx
from mlx_lm.generate import BatchGenerator, StopSequences
from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache
from modelkube_native import FinishReason, OutputPath, RenderSpec

from modelkube_serving.engine import shared_prefill
from modelkube_serving.engine.constrained import GrammarProcessor
from modelkube_serving.engine.penalties import LogitsProcessor, sampling_processors
from modelkube_serving.engine.prompt_cache import PromptCache
from modelkube_serving.engine.sampling import make_request_sampler
from modelkube_serving.engine.types import (
    EngineEvent,
    EventSink,
    Finished,
    GenerationRequest,
    Outcome,
    TextDelta,
)
from modelkube_serving.metrics import RuntimeMetrics

log = logging.getLogger(__name__)

Deliver = Callable[[list[tuple[EventSink, EngineEvent]]], None]

# mlx-lm's finish reasons: "stop" at a stop (end-of-sequence) token, "length" at max_tokens.
_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH}
# A sampled token's logprob, with the ids and logprobs of the likeliest alternatives.
Logprobs = tuple[float, list[int], list[float]]


@dataclass
class _Running:
    request: GenerationRequest
    sink: EventSink
    cached_tokens: int
    completion_tokens: int = 0
    index: int = 0  # which choice of its request


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
        output: OutputPath,
        metrics: RuntimeMetrics,
        model_name: str,
        deliver: Deliver,
        *,
        eos_token: int,
    ) -> None:
        self.gen = generator
        # What a constrained request ends on when its grammar cannot go on.
        self.eos_token = eos_token
        self.cache = cache
        self.output = output
        self.metrics = metrics
        self.labels = {"model": model_name}
        self.deliver = deliver
        self.running: dict[int, _Running] = {}
        self.uids: dict[str, list[int]] = {}  # a request's rows: one per choice

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

    def admit(
        self, request: GenerationRequest, render: RenderSpec, sink: EventSink, outbox: Outbox
    ) -> None:
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
        n = request.n
        try:
            if n > 1 and len(rest) > 1:  # one prefill, forked: see shared_prefill
                cache = shared_prefill.prefill(self.gen, cache, rest[:-1])
                rest = rest[-1:]
            start = len(prompt) - len(rest)
            caches = shared_prefill.fork(cache, n) if cache is not None else [None] * n
            uids = self.gen.insert(
                [rest] * n,
                max_tokens=[request.max_tokens] * n,
                caches=caches,
                all_tokens=[prompt[:start] for _ in range(n)],
                samplers=[make_request_sampler(request.sampling.for_choice(i)) for i in range(n)],
                stop_sequences=[StopSequences() for _ in range(n)] if request.ignore_eos else None,
                logits_processors=[self._processors(request) for _ in range(n)],
            )
        except Exception as exc:  # this request fails; the thread serves the others
            log.exception("request %s: cannot start generating", request.request_id)
            outbox.add(sink, Finished("error", len(prompt), 0, 0, error=str(exc)))
            return
        for index, uid in enumerate(uids):
            self.output.add(
                uid,
                render.for_choice(index) if n > 1 else render,
                stops=list(request.stop),
                prompt_tokens=len(prompt),
                cached_tokens=cached,
                skip_special_tokens=request.skip_special_tokens,
            )
            self.running[uid] = _Running(request, sink, cached, index=index)
        self.uids[request.request_id] = list(uids)

    def _processors(self, request: GenerationRequest) -> list[LogitsProcessor]:
        """One choice's own processors (they keep state): the sampling fields', then the
        grammar's mask last, so no bias can bring back a token the grammar forbids."""
        processors = sampling_processors(request.sampling)
        if request.grammar is not None:
            processors.append(GrammarProcessor(request.grammar.matcher(), self.eos_token))
        return processors

    def cancel(self, request_id: str, outbox: Outbox) -> bool:
        """False when the request is not in this batch."""
        uids = self.uids.get(request_id)
        if uids is None:
            return False
        self.gen.remove(uids)
        for uid in list(uids):
            self._finish(uid, "cancelled", outbox)
        return True

    def decode(self) -> None:
        _, responses = self.gen.next()
        if not responses:
            return
        self.metrics.batch_size.labels(**self.labels).observe(len(responses))
        outbox = Outbox()
        steps: list[tuple[int, int | None, FinishReason | None, Logprobs | None]] = []
        done: dict[int, Any] = {}
        for r in responses:
            running = self.running.get(r.uid)
            if running is None:
                continue
            eos = r.finish_reason == "stop"
            finish = None if r.finish_reason is None else _FINISH[r.finish_reason]
            wants = running.request.logprobs and not eos
            lp = _logprobs(running.request.top_logprobs, r.token, r.logprobs) if wants else None
            steps.append((r.uid, None if eos else r.token, finish, lp))
            if r.finish_reason is not None:
                done[r.uid] = r
        stopped: dict[int, tuple[FinishReason, bytes | None]] = {}
        for result in self.output.step(steps):
            uid, running = result.handle, self.running[result.handle]
            running.completion_tokens = result.completion_tokens
            if result.finish is None:
                outbox.add(running.sink, TextDelta(result.tokens, result.data, running.index))
            elif uid in done:  # its reason is the output path's: a stop string says "stop"
                r = done[uid]
                if running.index == 0:  # one cache per prompt, not one per choice
                    self.cache.insert_cache(r.all_tokens[:], r.prompt_cache)
                self._finish(uid, result.finish, outbox, data=result.data)
            else:  # a stop string ended it; the batch still has it
                stopped[uid] = (result.finish, result.data)
        if stopped:
            caches = self.gen.remove(stopped, return_prompt_caches=True)
            for uid, (cache, tokens) in caches.items():
                if self.running[uid].index == 0:
                    self.cache.insert_cache(tokens[:], cache)
            for uid, (finish, data) in stopped.items():
                self._finish(uid, finish, outbox, data=data)
        self.flush(outbox)

    def _finish(
        self,
        uid: int,
        reason: Outcome,
        outbox: Outbox,
        error: str | None = None,
        data: bytes | None = None,
    ) -> None:
        """The request is done; if the output path has not finished it, it is discarded."""
        running = self.running.pop(uid)
        request_id = running.request.request_id
        siblings = self.uids.get(request_id, [])
        if uid in siblings:
            siblings.remove(uid)
        if not siblings:
            self.uids.pop(request_id, None)
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
                data,
                running.index,
            ),
        )

    def cancel_all(self) -> None:
        outbox = Outbox()
        for uid in list(self.running):
            self._finish(uid, "cancelled", outbox, error="the engine stopped before it finished")
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


def _logprobs(top_n: int, token: int, row: mx.array) -> Logprobs:
    """The sampled token's logprob and the `top_n` likeliest alternatives, from the step's
    logprob row; the output path names the tokens."""
    if not top_n:
        return cast(float, row[token].item()), [], []
    ids = mx.argpartition(-row, top_n - 1)[:top_n]
    ids = ids[mx.argsort(-row[ids])]
    top_ids = cast(list[int], ids.tolist())
    top_values = cast(list[float], row[ids].tolist())
    return cast(float, row[token].item()), top_ids, top_values
