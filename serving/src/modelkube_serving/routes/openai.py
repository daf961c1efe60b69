"""The OpenAI-compatible endpoints: thin, they hand everything to the service."""

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from modelkube_serving.protocol import ChatCompletionRequest, CompletionRequest
from modelkube_serving.routes.deps import (
    client_key,
    require_api_key,
    require_serving,
    runtime,
    until_disconnect,
)
from modelkube_serving.services.completions import Prepared

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": runtime(request).service.model_cards()}


@router.post("/chat/completions", dependencies=[Depends(require_serving)])
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    return await _complete(request, runtime(request).service.prepare_chat(body))


@router.post("/completions", dependencies=[Depends(require_serving)])
async def completions(body: CompletionRequest, request: Request) -> Any:
    return await _complete(request, runtime(request).service.prepare_text(body))


async def _complete(request: Request, prepared: Prepared) -> Any:
    service = runtime(request).service
    request.state.served_model = prepared.model  # the `model` label of the request counter
    slot = await service.admit(prepared, client_key(request))
    if prepared.stream:
        return StreamingResponse(
            service.stream(prepared, slot),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    body = await until_disconnect(request, service.collect(prepared, slot), b"")
    return Response(body, media_type="application/json")
