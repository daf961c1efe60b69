"""Chat and text completions: from a validated request to a response or an SSE stream."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from modelkube_serving import sse
from modelkube_serving.engine.types import (
    Engine,
    EngineEvent,
    Finished,
    GenerationRequest,
    SamplingParams,
    TextDelta,
    TokenLogprob,
)
from modelkube_serving.errors import (
    ContextLengthExceeded,
    EngineFailure,
    InvalidRequest,
    ModelNotFound,
)
from modelkube_serving.metrics import RuntimeMetrics
from modelkube_serving.protocol import ChatCompletionRequest, CompletionRequest
from modelkube_serving.services import responses
from modelkube_serving.services.admission import Admission, Slot, Ticket


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


@dataclass
class Collected:
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)


class CompletionService:
    def __init__(
        self, engine: Engine, admission: Admission, metrics: RuntimeMetrics, model_name: str
    ) -> None:
        self.engine = engine
        self.admission = admission
        self.metrics = metrics
        self.model_name = model_name
        self.created = int(time.time())

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

    def model_card(self, name: str) -> dict[str, Any]:
        """`GET /v1/models/{name}`: its card, or a 404 unless it is served."""
        adapter = self.check_model(name)
        if adapter:
            return responses.model_card(name, self.created, self.model_name)
        return responses.model_card(name, self.created)

    def prepare_chat(self, req: ChatCompletionRequest) -> Prepared:
        adapter = self.check_model(req.model)
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        prompt = self.engine.encode_chat(messages)
        logprobs = req.logprobs
        return self._prepare(
            "chat", req, adapter, prompt, req.token_limit(), logprobs, req.top_logprobs or 0
        )

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

    def _prepare(
        self,
        kind: str,
        req: ChatCompletionRequest | CompletionRequest,
        adapter: str,
        prompt: list[int],
        limit: int | None,
        logprobs: bool,
        top_logprobs: int,
    ) -> Prepared:
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
            sampling=SamplingParams(req.temperature, req.top_p, req.seed),
            stop=req.stop_strings(),
            logprobs=logprobs,
            top_logprobs=top_logprobs,
            ignore_eos=req.ignore_eos,
            chat=kind == "chat",
            stream=req.stream,
            include_usage=req.include_usage,
            created=int(time.time()),
            adapter=adapter,
        )
        arrived = time.perf_counter()
        return Prepared(
            kind, generation, req.stream, req.include_usage, arrived, req.priority, req.model
        )

    # -- running -----------------------------------------------------------------------
    async def admit(self, prepared: Prepared, key: str) -> Slot:
        """A place in the batch, in the queue's order; the cost is the most tokens it may use."""
        request = prepared.generation
        cost = len(request.prompt_tokens) + request.max_tokens
        slot = await self.admission.acquire(Ticket(key, prepared.priority, cost))
        if not self.engine.serves(request.adapter):  # unloaded while it queued
            slot.release()
            self.check_model(prepared.model)
        return slot

    async def events(self, prepared: Prepared, slot: Slot) -> AsyncIterator[EngineEvent]:
        """The engine's events for one request; leaving early cancels it and frees the slot."""
        queue: asyncio.Queue[EngineEvent] = asyncio.Queue()
        request = prepared.generation
        finished = False
        first_token_at: float | None = None
        labels = {"model": prepared.model}
        if not self.engine.serves(request.adapter):  # unloaded since it was admitted
            slot.release()
            self.check_model(prepared.model)
        self.engine.submit(request, queue.put_nowait)
        try:
            while True:
                event = await queue.get()
                first = isinstance(event, TextDelta) or event.completion_tokens > 0
                if first and first_token_at is None:
                    first_token_at = time.perf_counter()
                    self.metrics.ttft.labels(**labels).observe(first_token_at - prepared.arrived)
                if isinstance(event, Finished):
                    finished = True
                    self._observe_finished(prepared, event, first_token_at)
                yield event
                if finished:
                    return
        finally:
            if not finished:
                self.engine.cancel(request.request_id)
            slot.release()

    def _observe_finished(self, prepared: Prepared, done: Finished, first: float | None) -> None:
        now = time.perf_counter()
        m, labels = self.metrics, {"model": prepared.model}
        m.prompt_tokens.labels(**labels).inc(done.prompt_tokens)
        m.generation_tokens.labels(**labels).inc(done.completion_tokens)
        endpoint = "chat" if prepared.kind == "chat" else "completions"
        m.duration.labels(model=prepared.model, endpoint=endpoint).observe(now - prepared.arrived)
        if first is not None and done.completion_tokens > 1:
            m.tpot.labels(**labels).observe((now - first) / (done.completion_tokens - 1))

    async def collect(self, prepared: Prepared, slot: Slot) -> dict[str, Any]:
        acc = Collected()
        done: Finished | None = None
        async for event in self.events(prepared, slot):
            if isinstance(event, TextDelta):
                acc.text.append(event.text)
                acc.logprobs.extend(event.logprobs)
            else:
                done = event
        assert done is not None
        _raise_on_error(done)
        text = done.text if done.text is not None else "".join(acc.text)
        rid, model = prepared.generation.request_id, prepared.model
        if prepared.kind == "chat":
            lp = responses.chat_logprobs(acc.logprobs) if prepared.generation.logprobs else None
            return responses.chat_completion(rid, model, text, done, lp)
        lp = responses.completion_logprobs(acc.logprobs) if prepared.generation.logprobs else None
        return responses.text_completion(rid, model, text, done, lp)

    async def stream(self, prepared: Prepared, slot: Slot) -> AsyncIterator[bytes]:
        """The engine's frames as they come; only logprob chunks are rendered here."""
        request = prepared.generation
        rid, model, created = request.request_id, prepared.model, request.created
        chat = prepared.kind == "chat"
        want_lp = prepared.generation.logprobs
        if chat:
            yield sse.frame(
                responses.chat_chunk(
                    rid, model, created, {"role": "assistant", "content": ""}, None
                )
            )
        async for event in self._stream_events(prepared, slot):
            if event.frame is not None:
                yield event.frame
                continue
            if isinstance(event, TextDelta):
                if not event.text and not event.logprobs:
                    continue
                lp = _chunk_logprobs(chat, event.logprobs) if want_lp else None
                if chat:
                    yield sse.frame(
                        responses.chat_chunk(rid, model, created, {"content": event.text}, None, lp)
                    )
                else:
                    yield sse.frame(responses.text_chunk(rid, model, created, event.text, None, lp))
                continue
            if event.reason == "error":
                yield sse.frame(EngineFailure(event.error or "generation failed").body())
                return
            if chat:
                yield sse.frame(responses.chat_chunk(rid, model, created, {}, event.reason))
            else:
                yield sse.frame(responses.text_chunk(rid, model, created, "", event.reason))
            if prepared.include_usage:
                obj = "chat.completion.chunk" if chat else "text_completion"
                yield sse.frame(responses.usage_chunk(rid, obj, model, created, event))
        yield sse.DONE

    async def _stream_events(self, prepared: Prepared, slot: Slot) -> AsyncIterator[EngineEvent]:
        """The events; an adapter unloaded before the request reached it ends the stream
        with the error body, as the response has started already."""
        try:
            async for event in self.events(prepared, slot):
                yield event
        except ModelNotFound as exc:
            yield Finished("error", 0, 0, 0, error=exc.message, frame=sse.frame(exc.body()))


def _chunk_logprobs(chat: bool, items: tuple[TokenLogprob, ...]) -> dict[str, Any]:
    return (
        responses.chat_logprobs(list(items)) if chat else responses.completion_logprobs(list(items))
    )


def _raise_on_error(done: Finished) -> None:
    if done.reason == "error":
        raise EngineFailure(done.error or "generation failed")
