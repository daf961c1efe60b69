"""The FastAPI application: lifespan, error rendering and request accounting."""

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from modelkube_native import UpstreamClient
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelkube_serving.engine.blas import loaded_blas
from modelkube_serving.engine.mlx_engine import EngineSettings, MLXEngine
from modelkube_serving.errors import APIError, InvalidRequest, NotFound, PayloadTooLarge
from modelkube_serving.metrics import RuntimeMetrics, UpstreamCollector
from modelkube_serving.models.adapters import AdapterSpec
from modelkube_serving.programs.lm import ChatBackend, local_backend
from modelkube_serving.programs.service import ProgramService
from modelkube_serving.programs.spec import ProgramSpec
from modelkube_serving.routes import adapters as adapter_routes
from modelkube_serving.routes import files as file_routes
from modelkube_serving.routes import fine_tuning as fine_tuning_routes
from modelkube_serving.routes import openai, ops
from modelkube_serving.routes import programs as program_routes
from modelkube_serving.routes import proxy as proxy_routes
from modelkube_serving.services.adapters import AdapterManager
from modelkube_serving.services.admission import Admission, AdmissionLimits
from modelkube_serving.services.completions import CompletionService
from modelkube_serving.services.fine_tuning import FineTuningService, FineTuningSettings
from modelkube_serving.services.proxy import ProxyService
from modelkube_serving.state import ProxyState, RuntimeState, ServingState
from modelkube_serving.upstream.providers import UpstreamTarget

log = logging.getLogger("modelkube.serve")
_TYPE_TAGS = {"str", "int", "float", "bool", "dict", "list", "none"}
_ENDPOINTS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/models": "models",
}


@dataclass(frozen=True)
class ServeConfig:
    model_path: Path | None  # None in proxy mode
    model_name: str
    max_concurrent_requests: int = 32
    max_queued_requests: int = 256
    max_queue_wait_s: float = 60.0
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_body_bytes: int = 8 << 20
    api_keys: tuple[bytes, ...] = ()
    context_length: int | None = None
    fine_tuning: FineTuningSettings | None = None  # --fine-tuning-api
    adapters: tuple[tuple[AdapterSpec, Path], ...] = ()  # from --adapter, resolved
    adapters_file: Path | None = None
    programs: tuple[ProgramSpec, ...] = ()  # from --programs-file
    programs_file: Path | None = None  # polled: programs reload without a restart
    upstream: UpstreamTarget | None = None  # proxy mode: a hosted provider answers
    upstream_timeout_s: float = 60.0
    upstream_retries: int = 2
    upstream_breaker: tuple[int, float] = (5, 10.0)  # failures in a row, seconds paused
    upstream_ca_file: Path | None = None  # trusted besides the system's CAs


def create_app(config: ServeConfig, on_fatal: Callable[[str], None] | None = None) -> FastAPI:
    metrics = RuntimeMetrics()
    admission = _admission(config, metrics)
    if config.upstream is not None:
        return _proxy_app(config, config.upstream, metrics, admission)
    assert config.model_path is not None, "a local model or an upstream"
    engine = MLXEngine(
        config.model_path,
        config.model_name,
        EngineSettings(max_batch_size=config.max_concurrent_requests),
        metrics,
    )
    if config.context_length is not None:
        engine.context_length = min(engine.context_length, config.context_length)
    service = CompletionService(engine, admission, metrics, config.model_name)
    adapters = AdapterManager(engine, metrics, config.adapters, config.adapters_file)
    state = RuntimeState(
        model_name=config.model_name,
        admission=admission,
        metrics=metrics,
        api_keys=config.api_keys,
        engine=engine,
        service=service,
        adapters=adapters,
    )
    metrics.blas.labels(library=loaded_blas()).set(1)
    fine_tuning = (
        FineTuningService(config.fine_tuning, config.model_name) if config.fine_tuning else None
    )
    programs = ProgramService(config.programs, local_backend(service), config.programs_file)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        def loaded(error: BaseException | None) -> None:
            if error is None:
                log.info("model %s ready (BLAS: %s)", config.model_name, loaded_blas())
            elif on_fatal is not None:
                on_fatal(f"cannot load model {config.model_name}: {error}")

        engine.start(asyncio.get_running_loop(), loaded)
        watcher = asyncio.create_task(adapters.run())
        programs_watcher = asyncio.create_task(programs.watch())
        yield
        watcher.cancel()
        programs_watcher.cancel()
        await asyncio.to_thread(engine.stop)
        if fine_tuning is not None:
            await fine_tuning.aclose()

    app = FastAPI(title="modelkube runtime", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.include_router(openai.router)
    app.include_router(adapter_routes.router)
    if fine_tuning is not None:  # off by default: the routes are absent, so 404
        app.state.fine_tuning = fine_tuning
        app.include_router(file_routes.router)
        app.include_router(fine_tuning_routes.router)
    return _finish(app, config, state, programs)


def _proxy_app(
    config: ServeConfig, target: UpstreamTarget, metrics: RuntimeMetrics, admission: Admission
) -> FastAPI:
    """Proxy mode: no model here; the same API, keys, limits, metrics and programs, with the
    requests answered by a hosted provider."""
    client = UpstreamClient(
        target.base_url,
        headers=list(target.headers),
        response_timeout_s=config.upstream_timeout_s,
        max_retries=config.upstream_retries,
        breaker_failures=config.upstream_breaker[0],
        breaker_cooldown_s=config.upstream_breaker[1],
        ca_file=config.upstream_ca_file,
    )
    provider = target.provider.name
    metrics.registry.register(UpstreamCollector(provider, client.counters, _breaker(client)))
    proxy = ProxyService(target, client, admission, metrics, config.model_name)
    state = ProxyState(
        model_name=config.model_name,
        admission=admission,
        metrics=metrics,
        api_keys=config.api_keys,
        proxy=proxy,
    )
    programs = ProgramService(
        config.programs, ChatBackend(config.model_name, proxy.chat), config.programs_file
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "proxying %s to %s (%s, model %s)",
            config.model_name,
            target.base_url,
            provider,
            target.model,
        )
        programs_watcher = asyncio.create_task(programs.watch())
        yield
        programs_watcher.cancel()

    app = FastAPI(title="modelkube runtime", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.include_router(proxy_routes.router)
    app.router.routes.extend(proxy_routes.routes)
    return _finish(app, config, state, programs)


def _breaker(client: UpstreamClient) -> Callable[[], str]:
    return lambda: client.breaker_state


def _admission(config: ServeConfig, metrics: RuntimeMetrics) -> Admission:
    labels = {"model": config.model_name}
    # Children looked up once: `labels()` costs more than the update, twice per request.
    in_flight, waiting = metrics.in_flight.labels(**labels), metrics.queued.labels(**labels)

    def admission_changed(running: int, queued: int) -> None:
        in_flight.set(running)
        waiting.set(queued)

    limits = AdmissionLimits(
        max_running=config.max_concurrent_requests,
        max_queued=config.max_queued_requests,
        max_queue_wait_s=config.max_queue_wait_s,
        requests_per_minute=config.requests_per_minute,
        tokens_per_minute=config.tokens_per_minute,
    )
    admission = Admission(limits, admission_changed)
    admission_changed(0, 0)
    metrics.max_concurrent.labels(**labels).set(config.max_concurrent_requests)
    metrics.max_queued.labels(**labels).set(config.max_queued_requests)
    return admission


def _finish(
    app: FastAPI, config: ServeConfig, state: ServingState, programs: ProgramService
) -> FastAPI:
    """What every mode shares: programs, operations, error bodies and request accounting."""
    app.state.runtime = state
    app.state.programs = programs
    app.include_router(program_routes.router)
    app.include_router(ops.router)
    _install_error_handlers(app)
    app.add_middleware(
        RequestAccounting,
        metrics=state.metrics,
        model=config.model_name,
        max_body_bytes=config.max_body_bytes,
    )
    return app


def _error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers())


def _validation_message(exc: RequestValidationError) -> APIError:
    first: dict[str, Any] = exc.errors()[0]
    # Drop "body" and pydantic's union-member tags ("str", "list[int]") from the path.
    loc = [
        str(p)
        for p in first.get("loc", ())
        if p != "body" and str(p) not in _TYPE_TAGS and "[" not in str(p)
    ]
    param = ".".join(loc) or None
    kind = first.get("type", "")
    if kind == "json_invalid":
        return InvalidRequest(
            "We could not parse the JSON body of your request. It is not valid JSON."
        )
    if kind == "extra_forbidden":
        return InvalidRequest(f"Unrecognized request argument supplied: {param}", param=param)
    if kind == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    where = f" at '{param}'" if param else ""
    return InvalidRequest(f"Invalid value{where}: {message}", param=param)


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, APIError)
        return _error_response(exc)

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _error_response(_validation_message(exc))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return _error_response(NotFound(f"No route for {request.method} {request.url.path}"))
        error = InvalidRequest(str(exc.detail))
        error.status_code = exc.status_code
        return _error_response(error)

    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return _error_response(APIError("The server had an error while processing your request."))

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def _endpoint(path: str) -> str | None:
    """The `endpoint` label of an API path; None for paths that are not counted."""
    if path.startswith("/v1/programs/"):
        return "programs"
    return _ENDPOINTS.get(path)


class RequestAccounting:
    """Counts API requests by status, and refuses bodies over the size limit up front."""

    def __init__(
        self, app: ASGIApp, metrics: RuntimeMetrics, model: str, max_body_bytes: int
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.model = model
        self.max_body_bytes = max_body_bytes
        self._counters: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = _endpoint(scope.get("path", "")) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if self._too_large(scope):
                await self._reject_too_large(send_recording)
            else:
                await self.app(scope, receive, send_recording)
        finally:
            # The route names the model once it validated it; unknown names stay unlabelled.
            model = scope.get("state", {}).get("served_model", self.model)
            self._counter(model, endpoint, status).inc()

    def _counter(self, model: str, endpoint: str, status: int) -> Any:
        key = (model, endpoint, status)
        counter = self._counters.get(key)
        if counter is None:  # a few dozen label sets at most: models x endpoints x statuses
            counter = self.metrics.requests.labels(
                model=model, endpoint=endpoint, status=str(status)
            )
            self._counters[key] = counter
        return counter

    def _too_large(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                return value.isdigit() and int(value) > self.max_body_bytes
        return False

    async def _reject_too_large(self, send: Send) -> None:
        error = PayloadTooLarge(f"The request body is larger than {self.max_body_bytes} bytes.")
        body = json.dumps(error.body()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": error.status_code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
