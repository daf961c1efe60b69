"""Health, readiness and metrics: always open, never behind API keys."""

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelkube_serving.routes.deps import serving

router = APIRouter()


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    if not serving(request).alive():
        return JSONResponse({"status": "engine stopped"}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    state = serving(request)
    if state.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    if state.loading():
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse({"status": "ready", "model": state.model_name})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(
        generate_latest(serving(request).metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
