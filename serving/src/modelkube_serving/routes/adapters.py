"""`GET /v1/adapters`: every adapter asked for, with its state and why it is not served."""

from typing import Any

from fastapi import APIRouter, Depends, Request

from modelkube_serving.routes.deps import require_api_key, runtime

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


@router.get("/adapters")
async def list_adapters(request: Request) -> dict[str, Any]:
    state = runtime(request)
    return {"object": "list", "data": [s.card() for s in state.adapters.statuses()]}
