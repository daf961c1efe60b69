"""Chat and text completions: from a validated request to a response or an SSE stream."""

import asyncio
import collections
import functools
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from modelkube_native import Grammar, InvalidGrammarError, RenderSpec, error_frame

from modelkube_serving.engine.intake import hand_over
from modelkube_serving.engine.types import (
    Engine,
    EngineEvent,
    Finished,
    GenerationRequest,
    SamplingParams,
    TextDelta,
)
from modelkube_serving.errors import (
    APIError,
    ContextLengthExceeded,
    EngineFailure,
    InvalidRequest,
    ModelNotFound,
)
from modelkube_serving.metrics import RuntimeMetrics
from modelkube_serving.protocol import ChatCompletionRequest, CompletionRequest, ResponseFormat
from modelkube_serving.protocol_sampling import token_biases
from modelkube_serving.services import responses
from modelkube_serving.services.admission import Admission, Slot, Ticket
from modelkube_serving.services.tools.encoding import encode_conversation, tool_grammar
from modelkube_serving.services.tools.plan import plan_tools


@dataclass
class Prepared:
    """A request ready for the engine, with what the response needs to say."""

    kind: str  # "chat" or "text"
    generation: GenerationRequest
    stream: bool
    include_usage: bool
    arrived: float
    priority: int = 0
    model: str = ""  # the name it asked for: the base model's, or "<base>:<adapter>"
    tools: bool = False  # tool calls in the output are parsed into `tool_calls`
    created: int = field(default_factory=lambda: int(time.time()))

    @functools.cached_property
    def render(self) -> RenderSpec:
        """How its response is rendered: every byte of it comes from the native renderer."""
        g = self.generation
        return RenderSpec(
            g.request_id,
            self.model,
            chat=self.kind == "chat",
            stream=self.stream,
            created=self.created,
            include_usage=self.include_usage,
            logprobs=g.logprobs,
            top_logprobs=g.top_logprobs,
            choices=g.n,
            tools=self.tools,
        )


class CompletionService:
    def __init__(
        self, engine: Engine, admission: Admission, metrics: RuntimeMetrics, model_name: str
    ) -> None:
        self.engine = engine
        self.admission = admission
        self.metrics = metrics
        self.model_name = model_name
        self.created = int(time.time())
        # Requests per adapter ("" is the base), for the endpoint pickers' LoRA metric.
        self._running: collections.Counter[str] = collections.Counter()
        self._waiting: collections.Counter[str] = collections.Counter()

    # -- preparing ---------------------------------------------------------------------
    def check_model(self, name: str) -> str:
        """The adapter `name` asks for ("" for the base model); 404 unless it is served."""
        if name == self.model_name:
            return ""
        adapter = name.removeprefix(f"{self.model_name}:")
        if adapter in (name, "") or not self.engine.serves(adapter):
            raise ModelNotFound(f"The model `{name}` does not exist.", param="model")
        return adapter

    def model_cards(self) -> list[dict[str, Any]]:
        """`GET /v1/models`: the base model, then every adapter served on it."""
        base = self.model_name
        adapters = [f"{base}:{name}" for name in self.engine.served_adapters()]
        cards = [responses.model_card(a, self.created, base) for a in adapters]
        return [responses.model_card(base, self.created), *cards]

    def adapter_load(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Adapters with requests running, and with requests waiting for a slot."""
        running = tuple(sorted(a for a, n in self._running.items() if a and n > 0))
        waiting = tuple(sorted(a for a, n in self._waiting.items() if a and n > 0))
        return running, waiting

    def model_card(self, name: str) -> dict[str, Any]:
        """`GET /v1/models/{name}`: its card, or a 404 unless it is served."""
        adapter = self.check_model(name)
        if adapter:
            return responses.model_card(name, self.created, self.model_name)
        return responses.model_card(name, self.created)

    def prepare_chat(self, req: ChatCompletionRequest) -> Prepared:
        adapter = self.check_model(req.model)
        plan = plan_tools(req)
        prompt = encode_conversation(self.engine, req.messages, plan)
        logprobs = req.logprobs
        answer = _answer_schema(req.response_format)
        grammar = tool_grammar(self.engine, plan, answer)
        if grammar is None and not plan.forced:
            grammar = self._grammar(req.response_format)
        prepared = self._prepare(
            "chat",
            req,
            adapter,
            prompt,
            req.token_limit(),
            logprobs,
            req.top_logprobs or 0,
            grammar,
        )
        prepared.tools = plan.active
        return prepared

    def _grammar(self, response_format: ResponseFormat | None) -> Grammar | None:
        """The grammar the output is constrained to; a schema that cannot compile is a 400
        naming the problem."""
        if response_format is None or response_format.type == "text":
            return None
        self._check_feature("response_format", f"response_format {response_format.type}")
        try:
            return self.engine.grammar(response_format.schema_text())
        except InvalidGrammarError as exc:
            raise InvalidRequest(str(exc), param="response_format") from exc

    def prepare_text(self, req: CompletionRequest) -> Prepared:
        adapter = self.check_model(req.model)
        if isinstance(req.prompt, str):
            prompt = self.engine.encode(req.prompt)
        elif isinstance(req.prompt[0], str):
            prompt = self.engine.encode(str(req.prompt[0]))
        else:
            prompt = [int(t) for t in req.prompt]
            limit = self.engine.vocab_size
            if any(not 0 <= t < limit for t in prompt):
                raise InvalidRequest(
                    f"prompt token ids must be in [0, {limit}) for this model", param="prompt"
                )
        top = req.logprobs or 0
        logprobs = req.logprobs is not None
        return self._prepare("text", req, adapter, prompt, req.max_tokens, logprobs, top)

    def _check_feature(self, param: str, what: str) -> None:
        if param not in self.engine.features:
            raise InvalidRequest(
                f"{what} is not supported by this model's engine ({self.engine.kind}).",
                param=param,
            )

    def _check_choices(self, n: int) -> None:
        most = self.engine.max_choices
        if most is not None and n > most:
            # The wording of the API's own bound (MAX_CHOICES), with the engine's reason.
            raise InvalidRequest(
                f"Invalid value at 'n': Input should be less than or equal to {most} (the "
                f"choices this model's engine, {self.engine.kind}, runs at once)",
                param="n",
            )

    def _prepare(
        self,
        kind: str,
        req: ChatCompletionRequest | CompletionRequest,
        adapter: str,
        prompt: list[int],
        limit: int | None,
        logprobs: bool,
        top_logprobs: int,
        grammar: Grammar | None = None,
    ) -> Prepared:
        if logprobs:
            self._check_feature("logprobs", "logprobs")
        if req.n > 1:
            self._check_feature("n", "n > 1")
            self._check_choices(req.n)
        if req.presence_penalty:
            self._check_feature("presence_penalty", "presence_penalty")
        if req.frequency_penalty:
            self._check_feature("frequency_penalty", "frequency_penalty")
        if req.logit_bias:
            self._check_feature("logit_bias", "logit_bias")
        if not prompt:
            field = "messages" if kind == "chat" else "prompt"
            raise InvalidRequest(f"The {field} is empty: it holds no token.", param=field)
        context = self.engine.context_length
        room = context - len(prompt)
        if room <= 0 or (limit is not None and limit > room):
            asked = f" plus {limit} completion tokens" if limit is not None else ""
            raise ContextLengthExceeded(
                f"This model's maximum context length is {context} tokens; the prompt has "
                f"{len(prompt)} tokens{asked}. Shorten the prompt or lower max_tokens.",
                param="messages" if kind == "chat" else "prompt",
            )
        generation = GenerationRequest(
            request_id=f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}",
            prompt_tokens=prompt,
            max_tokens=limit if limit is not None else room,
            sampling=self._sampling(req),
            stop=req.stop_strings(),
            logprobs=logprobs,
            top_logprobs=top_logprobs,
            ignore_eos=req.ignore_eos,
            skip_special_tokens=req.skip_special_tokens,
            adapter=adapter,
            grammar=grammar,
            n=req.n,
        )
        arrived = time.perf_counter()
        return Prepared(
            kind, generation, req.stream, req.include_usage, arrived, req.priority, req.model
        )

    def _sampling(self, req: ChatCompletionRequest | CompletionRequest) -> SamplingParams:
        """The sampling fields; a biased token id the model does not have is a 400."""
        biases = token_biases(req.logit_bias)
        limit = self.engine.vocab_size
        unknown = sorted(t for t in biases if t >= limit)
        if unknown:
            raise InvalidRequest(
                f"Invalid key in 'logit_bias': {unknown[0]} is not a token id of this model "
                f"(ids are below {limit}).",
                param="logit_bias",
            )
        return SamplingParams(
            req.temperature,
            req.top_p,
            req.seed,
            presence_penalty=req.presence_penalty,
            frequency_penalty=req.frequency_penalty,
            logit_bias=tuple(biases.items()),
        )

    # -- running -----------------------------------------------------------------------
    async def admit(self, prepared: Prepared, key: str) -> Slot:
        """A place in the batch, in the queue's order; the cost is the most tokens it may use."""
        request = prepared.generation
        cost = len(request.prompt_tokens) + request.n * request.max_tokens
        self._waiting[request.adapter] += 1
        try:
            slot = await self.admission.acquire(Ticket(key, prepared.priority, cost))
        finally:
            self._waiting[request.adapter] -= 1
        if not self.engine.serves(request.adapter):  # unloaded while it queued
            slot.release()
            self.check_model(prepared.model)
        return slot

    async def events(self, prepared: Prepared, slot: Slot) -> AsyncIterator[EngineEvent]:
        """The engine's events for one request; leaving early cancels it and frees the slot."""
        queue: asyncio.Queue[EngineEvent] = asyncio.Queue()
        request = prepared.generation
        finished = False
        left = request.n  # choices still generating
        first_token_at: float | None = None
        labels = {"model": prepared.model}
        if not self.engine.serves(request.adapter):  # unloaded since it was admitted
            slot.release()
            self.check_model(prepared.model)
        self.engine.submit(request, prepared.render, queue.put_nowait)
        hand_over()
        self._running[request.adapter] += 1
        try:
            while True:
                event = await queue.get()
                first = isinstance(event, TextDelta) or event.completion_tokens > 0
                if first and first_token_at is None:
                    first_token_at = time.perf_counter()
                    self.metrics.ttft.labels(**labels).observe(first_token_at - prepared.arrived)
                if isinstance(event, Finished):
                    left -= 1
                    # A choice that failed fails the request; the others are cancelled.
                    finished = left == 0 or event.reason in ("error", "cancelled")
                    self._observe_finished(prepared, event, first_token_at, finished)
                yield event
                if finished:
                    return
        finally:
            self._running[request.adapter] -= 1
            if not finished:
                self.engine.cancel(request.request_id)
            slot.release()

    def _observe_finished(
        self, prepared: Prepared, done: Finished, first: float | None, last: bool
    ) -> None:
        """One choice finished: its tokens count; the request's latency counts once, at its
        last choice, and its prompt once, at its first."""
        now = time.perf_counter()
        m, labels = self.metrics, {"model": prepared.model}
        if done.index == 0:
            m.prompt_tokens.labels(**labels).inc(done.prompt_tokens)
        m.generation_tokens.labels(**labels).inc(done.completion_tokens)
        if not last:
            return
        endpoint = "chat" if prepared.kind == "chat" else "completions"
        m.duration.labels(model=prepared.model, endpoint=endpoint).observe(now - prepared.arrived)
        if first is not None and done.completion_tokens > 1:
            m.tpot.labels(**labels).observe((now - first) / (done.completion_tokens - 1))

    async def collect(self, prepared: Prepared, slot: Slot) -> bytes:
        """The JSON response, as the native output path rendered it."""
        done: list[Finished] = []
        async for event in self.events(prepared, slot):
            if isinstance(event, Finished):
                if event.data is None:
                    raise _failure(event)
                done.append(event)
        if len(done) == 1:
            assert done[0].data is not None
            return done[0].data
        done.sort(key=lambda d: d.index)
        choices = [d.data for d in done if d.data is not None]
        return prepared.render.join(choices, *_usage(done))

    async def stream(self, prepared: Prepared, slot: Slot) -> AsyncIterator[bytes]:
        """The SSE frames of the response as they come, all rendered natively: the role
        chunk first, then the engine's chunks, or an error frame if it fails."""
        start = prepared.render.start()
        if start:
            yield start
        done: list[Finished] = []
        try:
            async for event in self.events(prepared, slot):
                if event.data is not None:
                    yield event.data
                elif isinstance(event, Finished):
                    yield _error_frame(_failure(event))
                    return
                if isinstance(event, Finished):
                    done.append(event)
            if prepared.generation.n > 1:  # each choice sent its finish: now usage, [DONE]
                yield prepared.render.close(*_usage(done))
        except ModelNotFound as exc:  # an adapter unloaded before the request reached it
            yield _error_frame(exc)


def _usage(done: list[Finished]) -> tuple[int, int, int]:
    """A response's usage over its choices: the prompt once, every choice's completion."""
    first = done[0]
    return first.prompt_tokens, sum(d.completion_tokens for d in done), first.cached_tokens


def _answer_schema(response_format: ResponseFormat | None) -> dict[str, Any] | None:
    """The JSON schema a `response_format` asks for (any object for `json_object`)."""
    if response_format is None or response_format.type == "text":
        return None
    if response_format.json_schema is None or not response_format.json_schema.schema_:
        return {"type": "object"}
    return response_format.json_schema.schema_


def _failure(done: Finished) -> EngineFailure:
    """A request that ended without a response: it failed, or the engine stopped."""
    return EngineFailure(done.error or "generation failed")


def _error_frame(exc: APIError) -> bytes:
    """A failure once the stream has started: the status is sent, so it is a frame."""
    return error_frame(exc.message, exc.error_type, param=exc.param, code=exc.code)
