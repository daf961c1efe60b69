"""What programs call: the served model's chat completion, in-process. No DSPy here, so a runtime
without programs never imports it (see `programs.serving`)."""

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from modelkube_serving.protocol import ChatCompletionRequest
from modelkube_serving.services.completions import CompletionService

PROGRAMS_KEY = "modelkube-programs"  # the admission key programs' requests queue under

# An OpenAI chat request body and an admission key -> the chat completion body.
ChatFn = Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class ChatBackend:
    """What programs call: the served model's name and its in-process chat completion."""

    model_name: str
    chat: ChatFn


def local_backend(service: CompletionService) -> ChatBackend:
    """Chat on the local engine, through the same validation and admission as the routes."""

    async def chat(body: dict[str, Any], key: str) -> dict[str, Any]:
        if "response_format" in body:
            # Its bounded grammar ends the answer; the room left in the context is the limit,
            # so a long prompt never makes a fixed max_tokens a 400.
            body = {k: v for k, v in body.items() if k != "max_tokens"}
        prepared = service.prepare_chat(ChatCompletionRequest.model_validate(body))
        slot = await service.admit(prepared, key)
        answer: dict[str, Any] = json.loads(await service.collect(prepared, slot))
        return answer

    return ChatBackend(service.model_name, chat)
