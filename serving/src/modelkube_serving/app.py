"""The FastAPI application of each mode: its services, lifespan and routes."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from modelkube_native import UpstreamClient

from modelkube_serving.api_app import api_app
from modelkube_serving.engine.blas import loaded_blas
from modelkube_serving.engine.choice import build_engine, choose_engine
from modelkube_serving.engine.types import Engine
from modelkube_serving.error_handlers import install_error_handlers
from modelkube_serving.metrics import (
    ModelServerCollector,
    RuntimeMetrics,
    ServerLoad,
    UpstreamCollector,
)
from modelkube_serving.middleware import RequestAccounting
from modelkube_serving.models.adapters import AdapterSpec
from modelkube_serving.openapi import install_openapi
from modelkube_serving.programs.backend import ChatBackend, local_backend
from modelkube_serving.programs.serving import Programs, serve_programs
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
    prefix_cache_bytes: int | None = None  # None: the engine's default
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
    vllm_metrics: bool = True  # vLLM's metric names too, for endpoint pickers
    engine: str = "mlx"  # mlx, llamacpp or auto (see engine/choice.py)
    engine_threads: int = 0  # llama.cpp's; 0: one per CPU


def create_app(config: ServeConfig, on_fatal: Callable[[str], None] | None = None) -> FastAPI:
    metrics = RuntimeMetrics()
    admission = _admission(config, metrics)
    if config.upstream is not None:
        return _proxy_app(config, config.upstream, metrics, admission)
    assert config.model_path is not None, "a local model or an upstream"
    kind = choose_engine(config.engine, config.model_path)
    engine = build_engine(
        kind,
        config.model_path,
        config.model_name,
        config.max_concurrent_requests,
        metrics,
        threads=config.engine_threads,
        context_length=config.context_length,
        prefix_cache_bytes=config.prefix_cache_bytes,
    )
    metrics.engine.labels(engine=kind).set(1)
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
    if config.vllm_metrics:
        metrics.registry.register(
            ModelServerCollector(config.model_name, _server_load(engine, service, admission))
        )
    fine_tuning = (
        FineTuningService(config.fine_tuning, config.model_name) if config.fine_tuning else None
    )
    programs = serve_programs(config.programs, local_backend(service), config.programs_file)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        def loaded(error: BaseException | None) -> None:
            if error is None:
                log.info(
                    "model %s ready (engine: %s, BLAS: %s)", config.model_name, kind, loaded_blas()
                )
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

    app = api_app("modelkube runtime", lifespan)
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
    programs = serve_programs(
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

    app = api_app("modelkube runtime", lifespan)
    app.include_router(proxy_routes.router)
    app.router.routes.extend(proxy_routes.routes)
    return _finish(app, config, state, programs)


def _server_load(
    engine: Engine, service: CompletionService, admission: Admission
) -> Callable[[], ServerLoad]:
    def load() -> ServerLoad:
        running, waiting = service.adapter_load()
        # Admitted requests the engine has no room for yet wait, as vLLM counts them.
        held = min(engine.waiting_requests(), admission.running)
        return ServerLoad(
            running=admission.running - held,
            waiting=admission.queued + held,
            cache_usage=engine.prefix_cache_usage(),
            running_adapters=running,
            waiting_adapters=waiting,
            max_adapters=len(engine.served_adapters()),
        )

    return load


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


def _finish(app: FastAPI, config: ServeConfig, state: ServingState, programs: Programs) -> FastAPI:
    """What every mode shares: programs, operations, error bodies and request accounting."""
    app.state.runtime = state
    app.state.programs = programs
    app.include_router(program_routes.router)
    app.include_router(ops.router)
    install_error_handlers(app)
    install_openapi(app)
    app.add_middleware(
        RequestAccounting,
        metrics=state.metrics,
        model=config.model_name,
        max_body_bytes=config.max_body_bytes,
        intake=state.engine.intake if isinstance(state, RuntimeState) else None,
    )
    return app
