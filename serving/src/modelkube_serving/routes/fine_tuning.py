"""OpenAI's fine-tuning jobs endpoints: thin, they hand everything to the service."""

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from modelkube_serving.protocol_fine_tuning import FineTuningJobCreate
from modelkube_serving.routes.deps import fine_tuning, require_api_key

router = APIRouter(prefix="/v1/fine_tuning/jobs", dependencies=[Depends(require_api_key)])


@router.post("")
async def create_job(body: FineTuningJobCreate, request: Request) -> dict[str, Any]:
    return await fine_tuning(request).create(body)


@router.get("")
async def list_jobs(
    request: Request, after: str | None = None, limit: int = Query(20, ge=1, le=100)
) -> dict[str, Any]:
    return await fine_tuning(request).list(after, limit)


@router.get("/{job_id}")
async def retrieve_job(job_id: str, request: Request) -> dict[str, Any]:
    return await fine_tuning(request).retrieve(job_id)


@router.post("/{job_id}/cancel")
async def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
    return await fine_tuning(request).cancel(job_id)


@router.get("/{job_id}/events")
async def list_events(
    job_id: str, request: Request, after: str | None = None, limit: int = Query(20, ge=1, le=100)
) -> dict[str, Any]:
    return await fine_tuning(request).events(job_id, after, limit)
