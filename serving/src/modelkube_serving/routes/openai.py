"""The OpenAI-compatible endpoints: thin, they hand everything to the service.

Bodies are read raw and validated by `bodies` (the reader proxy mode shares); the OpenAPI
document still describes them, through `openapi.py`.
"""

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from modelkube_serving import bodies
from modelkube_serving.protocol import ChatCompletionRequest, CompletionRequest
from modelkube_serving.routes.deps import (
    client_key,
    require_api_key,
    require_serving,
    runtime,
    until_disconnect,
)
from modelkube_serving.routes.streaming import ClosingStreamingResponse
from modelkube_serving.services.completions import Prepared

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": runtime(request).service.model_cards()}


@router.get("/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> dict[str, Any]:
    return runtime(request).service.model_card(model_id)


@router.post("/chat/completions", dependencies=[Depends(require_serving)])
async def chat_completions(request: Request) -> Any:
    body = bodies.parse(ChatCompletionRequest, await request.body())
    service = runtime(request).service
    # Chat templating and tokenizing take seconds on a huge prompt: off the event loop.
    return await _complete(request, await asyncio.to_thread(service.prepare_chat, body))


@router.post("/completions", dependencies=[Depends(require_serving)])
async def completions(request: Request) -> Any:
    body = bodies.parse(CompletionRequest, await request.body())
    service = runtime(request).service
    return await _complete(request, await asyncio.to_thread(service.prepare_text, body))


async def _complete(request: Request, prepared: Prepared) -> Any:
    service = runtime(request).service
    request.state.served_model = prepared.model  # the `model` label of the request counter
    slot = await service.admit(prepared, client_key(request))
    if prepared.stream:
        # The response owns the slot: a client gone before the first chunk never starts the
        # generator, whose own `finally` would then never run.
        return ClosingStreamingResponse(service.stream(prepared, slot), slot.release)
    try:
        body = await until_disconnect(request, service.collect(prepared, slot), b"")
    finally:
        slot.release()  # a task cancelled before it started never ran its own `finally`
    return Response(body, media_type="application/json")
