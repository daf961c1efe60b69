"""OpenAI's files endpoints, for fine-tuning data: thin, they hand everything to the service."""

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from modelkube_serving.errors import InvalidRequest
from modelkube_serving.protocol_fine_tuning import MultipartError, parse_upload
from modelkube_serving.routes.deps import fine_tuning, require_api_key
from modelkube_serving.services.files import MAX_FILE_BYTES, too_large

router = APIRouter(prefix="/v1/files", dependencies=[Depends(require_api_key)])
# Room for the multipart framing and the purpose field around the largest accepted file.
_MAX_BODY_BYTES = MAX_FILE_BYTES + (64 << 10)


@router.post("")
async def upload_file(request: Request) -> dict[str, Any]:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY_BYTES:
            raise too_large(f"The upload is over {_MAX_BODY_BYTES} bytes")
    try:
        upload = parse_upload(request.headers.get("content-type", ""), bytes(body))
    except MultipartError as exc:
        raise InvalidRequest(str(exc)) from exc
    return await fine_tuning(request).files.upload(upload)


@router.get("")
async def list_files(
    request: Request,
    after: str | None = None,
    limit: int = Query(10000, ge=1, le=10000),
    order: Literal["asc", "desc"] = "desc",
    purpose: str | None = None,
) -> dict[str, Any]:
    return await fine_tuning(request).files.list(after, limit, order, purpose)


@router.get("/{file_id}")
async def retrieve_file(file_id: str, request: Request) -> dict[str, Any]:
    return await fine_tuning(request).files.retrieve(file_id)
