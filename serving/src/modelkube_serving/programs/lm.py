"""A DSPy language model answered by this runtime's own engine: no HTTP hop, no extra process.

DSPy 3.4 deprecates `BaseLM.forward` subclasses (removed in 3.5) in favour of engines with
`complete(Request) -> Response` passed to `dspy.LM(engine=..., async_engine=...)`, so the runtime
plugs in there. Requests go through the CompletionService, so they queue in the same admission,
batch with ordinary traffic and show in the same token metrics.
"""

import asyncio
import os
from typing import Any

# LiteLLM, imported by DSPy, fetches a cost map from the internet unless told to use its own.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy
from dspy.lm15 import Message, Request, Response, TextPart, Usage, response_to_events

from modelkube_serving.protocol import ChatCompletionRequest
from modelkube_serving.services.completions import CompletionService

PROGRAMS_KEY = "modelkube-programs"  # the admission key programs' requests queue under


class AsyncRuntimeEngine:
    """DSPy's async engine contract over CompletionService; use it on the runtime's loop."""

    def __init__(self, service: CompletionService, key: str = PROGRAMS_KEY) -> None:
        self.service = service
        self.key = key

    async def complete(self, request: Request) -> Response:
        prepared = self.service.prepare_chat(chat_request(self.service.model_name, request))
        slot = await self.service.admit(prepared, self.key)
        return dspy_response(await self.service.collect(prepared, slot))

    async def stream(self, request: Request) -> Any:
        for event in response_to_events(await self.complete(request)):
            yield event

    async def aclose(self) -> None:
        return None


class RuntimeEngine:
    """The sync contract, for callers on other threads: hands the work to the runtime's loop."""

    def __init__(self, engine: AsyncRuntimeEngine, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self.loop = loop

    def complete(self, request: Request) -> Response:
        if _running_loop() is self.loop:  # .result() below would wait on itself forever
            raise RuntimeError("on the runtime's event loop, call programs with acall()")
        return asyncio.run_coroutine_threadsafe(self.engine.complete(request), self.loop).result()

    def stream(self, request: Request) -> Any:
        return response_to_events(self.complete(request))

    def close(self) -> None:
        return None


def runtime_lm(service: CompletionService, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> Any:
    """A `dspy.LM` whose calls run on `service`'s engine; kwargs are DSPy's LM defaults."""
    engine = AsyncRuntimeEngine(service)
    return dspy.LM(
        f"modelkube/{service.model_name}",
        engine=RuntimeEngine(engine, loop),
        async_engine=engine,
        cache=False,
        num_retries=0,
        **kwargs,
    )


def chat_request(model: str, request: Request) -> ChatCompletionRequest:
    """DSPy's canonical request as the OpenAI chat request the routes would have received."""
    messages = [{"role": m.role, "content": m.text or ""} for m in request.messages]
    if request.system is not None:
        system = request.system
        text = system if isinstance(system, str) else "".join(p.text for p in system)
        messages.insert(0, {"role": "system", "content": text})
    c = request.config
    fields: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": c.max_tokens}
    fields.update(temperature=c.temperature, top_p=c.top_p, seed=c.seed, stop=list(c.stop) or None)
    return ChatCompletionRequest.model_validate({k: v for k, v in fields.items() if v is not None})


def dspy_response(body: dict[str, Any]) -> Response:
    """The chat completion body CompletionService.collect returns, as DSPy's Response."""
    choice, usage = body["choices"][0], body["usage"]
    return Response(
        id=body["id"],
        model=body["model"],
        message=Message.assistant([TextPart(choice["message"]["content"])]),
        finish_reason="length" if choice["finish_reason"] == "length" else "stop",
        usage=Usage(
            input_tokens=usage["prompt_tokens"],
            output_tokens=usage["completion_tokens"],
            total_tokens=usage["total_tokens"],
        ),
    )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
