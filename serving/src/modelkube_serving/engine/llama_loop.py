"""The llama.cpp engine's batch: admits, steps and cancels requests on one LlamaEngine.

Everything here runs on the engine thread. A step is one native call: llama.cpp decodes every
running request, samples each (penalties, logit_bias and a grammar's mask applied, logprobs
taken, in Rust), and the output path detokenizes, applies stop strings and renders, all with the
GIL released. Each choice of a request has a llama.cpp sequence with KV cells of its own; the
`n` choices of one request share one prefill of its prompt (the engine copies the prompt's cells
into each choice's sequence). A request that finds too few free sequences waits in the backlog.

The base and each LoRA adapter have a loop of their own on the same LlamaEngine (one model,
one context): llama.cpp sets adapters for a whole decode, so a loop's step decodes only its
own adapter's requests, and the engine loop steps each busy variant in turn.
"""

import contextlib
import itertools
import logging
from dataclasses import dataclass

from modelkube_native import LlamaEngine, NativeError, OutputPath, RenderSpec

from modelkube_serving.engine.batch_loop import Deliver, Outbox
from modelkube_serving.engine.llama_backlog import Backlog, Waiting
from modelkube_serving.engine.types import (
    EventSink,
    Finished,
    GenerationRequest,
    Outcome,
    TextDelta,
)
from modelkube_serving.metrics import RuntimeMetrics

log = logging.getLogger(__name__)
# The smallest positive float32: the API takes any top_p above 0, and one that rounds to 0 as
# llama.cpp's float32 would be refused there; this narrowest nucleus keeps the top token.
_F32_TINY = 1.1754943508222875e-38


@dataclass
class _Running:
    request: GenerationRequest
    sink: EventSink
    completion_tokens: int = 0
    cached: int = 0  # prompt tokens whose KV cells were reused
    index: int = 0  # which choice of its request


class LlamaLoop:
    def __init__(
        self,
        engine: LlamaEngine,
        output: OutputPath,
        metrics: RuntimeMetrics,
        model_name: str,
        deliver: Deliver,
        adapter: int = 0,
        handles: "itertools.count[int] | None" = None,
        backlog: Backlog | None = None,
    ) -> None:
        self.engine = engine
        self.output = output
        self.metrics = metrics
        self.labels = {"model": model_name}
        self.deliver = deliver
        self.adapter = adapter  # the engine's adapter id; 0 is the base
        self.rows: dict[int, _Running] = {}  # by engine handle: one per choice
        self.handles: dict[str, list[int]] = {}  # a request's choices' handles
        # Handles name requests in the engine, which the variants share: one counter for all.
        self._handles = handles if handles is not None else itertools.count()
        # Sequences are the engine's, so the variants share the line for them too.
        self.backlog = backlog if backlog is not None else Backlog(lambda: engine.free_sequences)

    @property
    def running(self) -> list[str]:
        """The requests this loop has, generating or waiting for sequences."""
        return [*self.handles, *self.backlog.of(self)]

    def admit(
        self, request: GenerationRequest, render: RenderSpec, sink: EventSink, outbox: Outbox
    ) -> None:
        if not 1 <= request.n <= self.engine.sequences:  # the service refused it already
            error = f"n must be from 1 to {self.engine.sequences} on the llama.cpp engine"
            outbox.add(sink, Finished("error", len(request.prompt_tokens), 0, 0, error=error))
        elif self.backlog.fits(request.n):
            self._start(request, render, sink, outbox)
        else:
            self.backlog.wait(Waiting(request, render, sink, self._start, self))

    def _start(
        self, request: GenerationRequest, render: RenderSpec, sink: EventSink, outbox: Outbox
    ) -> None:
        prompt = len(request.prompt_tokens)
        n = request.n
        handles = [next(self._handles) for _ in range(n)]
        sampling = request.sampling
        # Each choice's seed as on MLX: a seeded request stays reproducible, its choices differ.
        others = [(h, sampling.for_choice(i).engine_seed()) for i, h in enumerate(handles) if i]
        handle = handles[0]
        try:
            cached = self.engine.add(
                handle,
                request.prompt_tokens,
                max_tokens=request.max_tokens,
                temperature=sampling.temperature,
                top_p=max(sampling.top_p, _F32_TINY),
                seed=sampling.engine_seed(),
                ignore_eos=request.ignore_eos,
                presence_penalty=sampling.presence_penalty,
                frequency_penalty=sampling.frequency_penalty,
                logit_bias=list(sampling.logit_bias),
                logprobs=request.top_logprobs if request.logprobs else None,
                grammar=request.grammar,
                adapter=self.adapter,
                others=others,
            )
            for index, h in enumerate(handles):
                self.output.add(
                    h,
                    render.for_choice(index) if n > 1 else render,
                    stops=list(request.stop),
                    prompt_tokens=prompt,
                    cached_tokens=cached,
                    skip_special_tokens=request.skip_special_tokens,
                )
        except NativeError as exc:  # this request fails; the thread serves the others
            for h in handles:
                self.engine.cancel(h)
                with contextlib.suppress(KeyError):
                    self.output.discard(h)
            log.warning("request %s: cannot start generating: %s", request.request_id, exc)
            outbox.add(sink, Finished("error", prompt, 0, 0, error=str(exc)))
            return
        if cached:  # the same prefix-cache counters as MLX's, for the dashboard's hit ratio
            self.metrics.cache_hits.labels(**self.labels).inc()
            self.metrics.cache_hit_tokens.labels(**self.labels).inc(cached)
        for index, h in enumerate(handles):
            self.rows[h] = _Running(request, sink, cached=cached, index=index)
        self.handles[request.request_id] = handles

    def step(self) -> None:
        """Start what waited for sequences and now fits, then decode one step; a failing step
        fails the requests in the batch, never the thread serving the rest."""
        outbox = Outbox()
        self.backlog.start_ready(outbox)
        self.flush(outbox)
        if not self.rows:  # only waiting: the other variants' steps free the sequences
            return
        self.metrics.batch_size.labels(**self.labels).observe(len(self.rows))
        try:
            results = self.engine.step(self.output, self.adapter)
        except Exception as exc:
            log.exception("engine step failed; failing the %d requests", len(self.handles))
            self.engine.clear(self.adapter)
            for handle in list(self.rows):
                self._finish(handle, "error", outbox, error=f"generation failed: {exc}")
            self.flush(outbox)
            return
        for result in results:
            running = self.rows[result.handle]
            running.completion_tokens = result.completion_tokens
            if result.finish is None:
                outbox.add(running.sink, TextDelta(result.tokens, result.data, running.index))
            else:
                self._finish(result.handle, result.finish, outbox, data=result.data)
        self.flush(outbox)

    def cancel(self, request_id: str, outbox: Outbox) -> bool:
        """False when the request is not in this loop. Every choice's sequence is freed."""
        waiting = self.backlog.remove(self, request_id)
        if waiting is not None:
            prompt = len(waiting.request.prompt_tokens)
            outbox.add(waiting.sink, Finished("cancelled", prompt, 0, 0))
            return True
        handles = self.handles.get(request_id)
        if handles is None:
            return False
        for handle in list(handles):
            self.engine.cancel(handle)
            self._finish(handle, "cancelled", outbox)
        return True

    def _finish(
        self,
        handle: int,
        reason: Outcome,
        outbox: Outbox,
        error: str | None = None,
        data: bytes | None = None,
    ) -> None:
        running = self.rows.pop(handle)
        request_id = running.request.request_id
        siblings = self.handles.get(request_id, [])
        if handle in siblings:
            siblings.remove(handle)
        if not siblings:
            self.handles.pop(request_id, None)
        if reason in ("cancelled", "error"):
            with contextlib.suppress(KeyError):  # the output path may have finished it
                self.output.discard(handle)
        prompt = len(running.request.prompt_tokens)
        event = Finished(
            reason,
            prompt,
            running.completion_tokens,
            running.cached,
            error,
            data,
            running.index,
        )
        outbox.add(running.sink, event)

    def close(self) -> None:
        outbox = Outbox()
        self.engine.clear(self.adapter)
        if self.adapter:
            self.engine.free_adapter(self.adapter)
        error = "the engine stopped before it finished"
        for handle in list(self.rows):
            self._finish(handle, "cancelled", outbox, error=error)
        for waiting in self.backlog.remove_all(self):
            prompt = len(waiting.request.prompt_tokens)
            outbox.add(waiting.sink, Finished("cancelled", prompt, 0, 0, error=error))
        self.flush(outbox)

    def flush(self, outbox: Outbox) -> None:
        if outbox.items:
            self.deliver(outbox.items)
