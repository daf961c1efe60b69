"""The llama.cpp engine's batch: admits, steps and cancels requests on one LlamaEngine.

Everything here runs on the engine thread. A step is one native call: llama.cpp decodes every
running request, samples each (penalties, logit_bias and a grammar's mask applied, logprobs
taken, in Rust), and the output path detokenizes, applies stop strings and renders, all with the
GIL released. Each request has a llama.cpp sequence with KV cells of its own
(admission bounds the requests running to the sequences there are).

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
from modelkube_serving.engine.types import (
    EventSink,
    Finished,
    GenerationRequest,
    Outcome,
    TextDelta,
)
from modelkube_serving.metrics import RuntimeMetrics

log = logging.getLogger(__name__)


@dataclass
class _Running:
    request: GenerationRequest
    sink: EventSink
    completion_tokens: int = 0
    cached: int = 0  # prompt tokens whose KV cells were reused


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
    ) -> None:
        self.engine = engine
        self.output = output
        self.metrics = metrics
        self.labels = {"model": model_name}
        self.deliver = deliver
        self.adapter = adapter  # the engine's adapter id; 0 is the base
        self.running: dict[int, _Running] = {}
        self.handles: dict[str, int] = {}
        # Handles name requests in the engine, which the variants share: one counter for all.
        self._handles = handles if handles is not None else itertools.count()

    def admit(
        self, request: GenerationRequest, render: RenderSpec, sink: EventSink, outbox: Outbox
    ) -> None:
        prompt = len(request.prompt_tokens)
        if request.n != 1:  # the service refused it (not among this engine's features)
            error = "n > 1 is not served by the llama.cpp engine"
            outbox.add(sink, Finished("error", prompt, 0, 0, error=error))
            return
        handle = next(self._handles)
        sampling = request.sampling
        try:
            cached = self.engine.add(
                handle,
                request.prompt_tokens,
                max_tokens=request.max_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                seed=sampling.seed,
                ignore_eos=request.ignore_eos,
                presence_penalty=sampling.presence_penalty,
                frequency_penalty=sampling.frequency_penalty,
                logit_bias=list(sampling.logit_bias),
                logprobs=request.top_logprobs if request.logprobs else None,
                grammar=request.grammar,
                adapter=self.adapter,
            )
            self.output.add(
                handle,
                render,
                stops=list(request.stop),
                prompt_tokens=prompt,
                cached_tokens=cached,
                skip_special_tokens=request.skip_special_tokens,
            )
        except NativeError as exc:  # this request fails; the thread serves the others
            self.engine.cancel(handle)
            log.warning("request %s: cannot start generating: %s", request.request_id, exc)
            outbox.add(sink, Finished("error", prompt, 0, 0, error=str(exc)))
            return
        if cached:  # the same prefix-cache counters as MLX's, for the dashboard's hit ratio
            self.metrics.cache_hits.labels(**self.labels).inc()
            self.metrics.cache_hit_tokens.labels(**self.labels).inc(cached)
        self.running[handle] = _Running(request, sink, cached=cached)
        self.handles[request.request_id] = handle

    def step(self) -> None:
        """Decode one step; a failing step fails the requests in the batch, never the thread
        serving the rest."""
        outbox = Outbox()
        self.metrics.batch_size.labels(**self.labels).observe(len(self.running))
        try:
            results = self.engine.step(self.output, self.adapter)
        except Exception as exc:
            log.exception("engine step failed; failing the %d requests", len(self.running))
            self.engine.clear(self.adapter)
            for handle in list(self.running):
                self._finish(handle, "error", outbox, error=f"generation failed: {exc}")
            self.flush(outbox)
            return
        for result in results:
            running = self.running[result.handle]
            running.completion_tokens = result.completion_tokens
            if result.finish is None:
                outbox.add(running.sink, TextDelta(result.tokens, result.data))
            else:
                self._finish(result.handle, result.finish, outbox, data=result.data)
        self.flush(outbox)

    def cancel(self, request_id: str, outbox: Outbox) -> bool:
        """False when the request is not in this loop."""
        handle = self.handles.get(request_id)
        if handle is None:
            return False
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
        running = self.running.pop(handle)
        self.handles.pop(running.request.request_id, None)
        if reason in ("cancelled", "error"):
            with contextlib.suppress(KeyError):  # the output path may have finished it
                self.output.discard(handle)
        prompt = len(running.request.prompt_tokens)
        event = Finished(reason, prompt, running.completion_tokens, running.cached, error, data)
        outbox.add(running.sink, event)

    def close(self) -> None:
        outbox = Outbox()
        self.engine.clear(self.adapter)
        if self.adapter:
            self.engine.free_adapter(self.adapter)
        error = "the engine stopped before it finished"
        for handle in list(self.running):
            self._finish(handle, "cancelled", outbox, error=error)
        self.flush(outbox)

    def flush(self, outbox: Outbox) -> None:
        if outbox.items:
            self.deliver(outbox.items)
