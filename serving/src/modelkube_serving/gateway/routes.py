"""The gateway's OpenAI endpoints: `/v1/models` (the union of every ModelService's models)
and the two completion endpoints, forwarded to a pod of the model's ModelService. The
completions are plain handlers that `fastpath` calls without FastAPI's stack."""

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from modelkube_serving.gateway.forward import TRIED_HEADER, Forwarder, Tried
from modelkube_serving.routes.deps import (
    client_key,
    require_api_key,
    require_serving,
    until_disconnect,
)
from modelkube_serving.routes.streaming import ClosingStreamingResponse

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


def forwarder(request: Request) -> Forwarder:
    found: Forwarder = request.app.state.forwarder
    return found


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": forwarder(request).model_cards()}


@router.get("/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> dict[str, Any]:
    return forwarder(request).model_card(model_id)


def behind_front(request: Request) -> bool:
    """Whether this app serves behind `--front native`, which passes it requests it tried."""
    return bool(request.app.state.behind_front)


async def chat_completions(request: Request) -> Response:
    return await _forward(request, "chat")


async def completions(request: Request) -> Response:
    return await _forward(request, "completions")


handlers = {"/v1/chat/completions": chat_completions, "/v1/completions": completions}


async def _forward(request: Request, endpoint: str) -> Response:
    await require_api_key(request)
    await require_serving(request)
    gateway = forwarder(request)
    routed = gateway.prepare(endpoint, await request.body(), request.headers.get("authorization"))
    request.state.served_model = routed.model
    before = Tried.parse(request.headers.get(TRIED_HEADER)) if behind_front(request) else None
    slot = await gateway.admit(routed, client_key(request))
    if routed.stream:
        try:
            # Watched too: the stream may be held while its model scales from zero.
            opened = await until_disconnect(request, gateway.open_stream(routed, before), None)
        except BaseException:
            slot.release()
            raise
        if opened is None:  # the client left; nobody reads this
            slot.release()
            return Response(status_code=499)
        stream, load = opened
        if stream.status >= 400:
            body = b"".join([chunk async for chunk in stream])
            stream.close()
            load.release()
            slot.release()
            return Response(body, stream.status, media_type="application/json")

        def close() -> None:
            stream.close()
            load.release()
            slot.release()

        return ClosingStreamingResponse(gateway.relay(stream, load), close)
    try:
        answer = await until_disconnect(request, gateway.complete(routed, before), None)
    finally:
        slot.release()
    if answer is None:  # the client left; nobody reads this
        return Response(status_code=499)
    return Response(
        answer.body,
        answer.status,
        media_type=answer.headers.get("content-type", "application/json"),
        headers=_passed(answer.headers),
    )


def _passed(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k == "retry-after"}
