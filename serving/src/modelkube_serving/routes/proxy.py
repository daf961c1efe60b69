"""The OpenAI endpoints in proxy mode: the body is read raw and handed to the ProxyService,
so fields the provider supports and our engine does not (tools, response_format) pass on.

The two completion endpoints are plain Starlette routes, not FastAPI ones: they take no
parsed parameters, and skipping FastAPI's dependency solving is a tenth of a millisecond of
the latency the proxy adds to every call.
"""

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.routing import Route

from modelkube_serving.routes.deps import (
    client_key,
    proxy_state,
    require_api_key,
    require_serving,
    until_disconnect,
)
from modelkube_serving.routes.streaming import ClosingStreamingResponse
from modelkube_serving.services.proxy import Relayed

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])
_EMPTY = Relayed(b"", "application/json")


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": proxy_state(request).proxy.model_cards()}


@router.get("/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> dict[str, Any]:
    return proxy_state(request).proxy.model_card(model_id)


async def chat_completions(request: Request) -> Response:
    return await _forward(request, "chat")


async def completions(request: Request) -> Response:
    return await _forward(request, "completions")


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
]


async def _forward(request: Request, endpoint: str) -> Response:
    await require_api_key(request)
    await require_serving(request)
    proxy = proxy_state(request).proxy
    forward = proxy.prepare(endpoint, await request.body())
    request.state.served_model = proxy.model_name
    slot = await proxy.admit(forward, client_key(request))
    if forward.stream:
        stream = await proxy.open_stream(forward, slot)

        def close() -> None:
            stream.close()
            slot.release()

        return ClosingStreamingResponse(proxy.relay(forward, slot, stream), close)
    try:
        relayed = await until_disconnect(request, proxy.complete(forward, slot), _EMPTY)
    finally:
        slot.release()  # a task cancelled before it started never ran its own `finally`
    return Response(relayed.body, media_type=relayed.content_type)
