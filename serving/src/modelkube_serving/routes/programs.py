"""DSPy programs next to the model: `GET /v1/programs`, `POST /v1/programs/{name}`."""

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from modelkube_serving import bodies
from modelkube_serving.programs.serving import Programs
from modelkube_serving.routes.deps import require_api_key, require_serving

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


class ProgramRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, Any]


def _programs(request: Request) -> Programs:
    service: Programs = request.app.state.programs
    return service


@router.get("/programs")
async def list_programs(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": _programs(request).cards()}


@router.post("/programs/{name}", dependencies=[Depends(require_serving)])
async def run_program(name: str, request: Request) -> dict[str, Any]:
    # Read as the completion routes read theirs: the same 400s for an empty body, bad JSON and
    # a lone surrogate (which reached the engine's prompt and failed there with a 500).
    body = bodies.parse(ProgramRequest, await request.body())
    return await _programs(request).run(name, body.inputs)
