"""`modelkube serve`, `models`, `finetune`, `optimize` and `gateway`: the command line."""

import argparse
import logging
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from modelkube_serving.argtypes import non_negative, positive, positive_float
from modelkube_serving.engine.blas import find_openblas
from modelkube_serving.engine.choice import ENGINE_CHOICES
from modelkube_serving.finetune.command import add_parser as add_finetune_parser
from modelkube_serving.gateway.command import add_parser as add_gateway_parser
from modelkube_serving.models.adapters import AdapterSpec, AdapterSpecError, parse_adapter_arg
from modelkube_serving.models.gguf import DTYPES
from modelkube_serving.programs.optimize_command import add_parser as add_optimize_parser
from modelkube_serving.upstream.providers import API_KEY_ENV, PROVIDERS

if TYPE_CHECKING:
    from modelkube_serving.app import ServeConfig
    from modelkube_serving.upstream.providers import UpstreamTarget

_BLAS_MARK = "MODELKUBE_BLAS_REEXEC"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelkube", description="modelkube runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a model through the OpenAI API")
    serve.add_argument(
        "--model",
        help="builtin://tiny, hf://org/name, pvc://claim/path or a path; any may name a .gguf file",
    )
    serve.add_argument(
        "--dtype",
        choices=DTYPES,
        default="auto",
        help="a GGUF model's weights: float32 (dequantized), keep (as in the file), "
        "auto (float32 on the CPU, keep on an accelerator)",
    )
    serve.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default="mlx",
        help="mlx, llamacpp (GGUF models, in the Rust core), or auto (llama.cpp for a GGUF "
        "model on a node without an accelerator, else MLX)",
    )
    serve.add_argument(
        "--engine-threads",
        type=non_negative,
        default=0,
        help="llama.cpp's threads (default 0: one per CPU this process may use)",
    )
    serve.add_argument("--served-model-name", help="the name clients use (default: from the URI)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-concurrent-requests", type=positive, default=32)
    serve.add_argument("--max-queued-requests", type=non_negative, default=256)
    serve.add_argument(
        "--max-queue-wait", type=positive_float, default=60.0, help="seconds a request may queue"
    )
    serve.add_argument(
        "--rate-limit-rpm", type=positive, help="requests per minute per API key (default: none)"
    )
    serve.add_argument(
        "--rate-limit-tpm",
        type=positive,
        help="prompt plus max_tokens per minute per API key (default: none)",
    )
    serve.add_argument(
        "--context-length", type=positive, help="cap the context below the model's own limit"
    )
    serve.add_argument(
        "--prefix-cache-mb",
        type=positive,
        help="MiB of KV caches the MLX engine keeps for prompt reuse (default: 1024)",
    )
    serve.add_argument("--api-keys-file", type=Path, help="one key per line; /v1 then requires one")
    serve.add_argument(
        "--adapter",
        action="append",
        default=[],
        type=_adapter,
        metavar="NAME=URI",
        help="serve an adapter directory (hf://, pvc:// or a path) as model <name>:NAME",
    )
    serve.add_argument(
        "--adapters-file",
        type=Path,
        help='JSON {"adapters": [{"name": ..., "uri": ...}]}, polled; adapters load and unload',
    )
    serve.add_argument(
        "--programs-file",
        type=Path,
        help='JSON {"programs": [{"name", "signature", "module", ...}]}, polled: DSPy programs',
    )
    serve.add_argument(
        "--fine-tuning-api",
        action="store_true",
        help="serve /v1/files and /v1/fine_tuning/jobs on FineTuneJobs (needs a service account)",
    )
    serve.add_argument(
        "--fine-tuning-output-claim", metavar="CLAIM", help="the PVC that trained adapters go to"
    )
    serve.add_argument(
        "--fine-tuning-base-model", metavar="URI", help="the model to fine-tune (default: --model)"
    )
    upstream = serve.add_argument_group(
        "proxy mode",
        f"serve a hosted provider's model instead of --model; the key is ${API_KEY_ENV}",
    )
    upstream.add_argument("--upstream-provider", choices=PROVIDERS)
    upstream.add_argument("--upstream-model", help="the provider's model id")
    upstream.add_argument(
        "--upstream-base-url", help="the provider's OpenAI API base (default: the provider's)"
    )
    upstream.add_argument(
        "--upstream-timeout",
        type=positive_float,
        default=60.0,
        help="seconds to wait for the provider's answer to begin, per attempt",
    )
    upstream.add_argument(
        "--upstream-retries", type=non_negative, default=2, help="retries on 429, 5xx, no answer"
    )
    upstream.add_argument(
        "--upstream-ca-file",
        type=Path,
        help="PEM certificates to trust besides the system's (a gateway behind a private CA)",
    )
    upstream.add_argument(
        "--upstream-breaker-failures",
        type=non_negative,
        default=5,
        help="failures in a row that pause calls to the provider (0: never)",
    )
    upstream.add_argument(
        "--upstream-breaker-cooldown",
        type=positive_float,
        default=10.0,
        help="seconds calls stay paused before one probe is let through",
    )
    serve.add_argument(
        "--drain-grace-period", type=float, default=30.0, help="seconds, after SIGTERM"
    )
    serve.add_argument(
        "--vllm-metrics",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also export vLLM's metric names (vllm:num_requests_waiting, ...), which the "
        "Gateway API Inference Extension's endpoint picker reads",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    models = sub.add_parser("models", help="manage built-in models")
    models.add_argument("action", choices=["create"])
    models.add_argument("names", nargs="+", help="tiny, small, smollm2-135m-instruct")
    models.add_argument("--dtype", choices=DTYPES, default="auto", help="as for serve")
    add_finetune_parser(sub)
    add_gateway_parser(sub)
    add_optimize_parser(sub)
    # Other distributions (the operator, ...) add their subcommands through this entry-point group.
    for entry in entry_points(group="modelkube.commands"):
        entry.load()(sub)
    return parser


def _adapter(text: str) -> AdapterSpec:
    try:
        return parse_adapter_arg(text)
    except AdapterSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def served_name(uri: str) -> str:
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    name = name.split("@", 1)[0] or uri
    return name[: -len(".gguf")] if name.lower().endswith(".gguf") else name


def _reexec_with_openblas() -> None:
    """MLX's CPU wheel bundles a slow reference BLAS; preloading OpenBLAS replaces its sgemm."""
    if sys.platform != "linux" or os.environ.get("MODELKUBE_BLAS") == "reference":
        return
    if os.environ.get(_BLAS_MARK) or "libopenblas" in os.environ.get("LD_PRELOAD", ""):
        return
    library = find_openblas()
    if library is None:
        print(
            "modelkube: warning: OpenBLAS not found (apt-get install libopenblas0-pthread); "
            "MLX falls back to its reference BLAS, 5-20x slower",
            file=sys.stderr,
        )
        return
    env = dict(os.environ, **{_BLAS_MARK: "1"})
    env["LD_PRELOAD"] = ":".join(p for p in (library, os.environ.get("LD_PRELOAD")) if p)
    env.setdefault("OPENBLAS_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    argv = [sys.executable, "-m", "modelkube_serving", *sys.argv[1:]]
    os.execve(sys.executable, argv, env)  # noqa: S606 - re-exec of ourselves, no shell


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper() if "log_level" in args else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "models":
        return _create_models(args.names, args.dtype)
    if args.command in ("serve", "finetune"):
        _reexec_with_openblas()
    if args.command != "serve":
        code: int = args.run(args)
        return code
    return _serve(args)


def _create_models(names: list[str], dtype: str) -> int:
    from modelkube_serving.models.uri import ModelSourceError, resolve_model

    for name in names:
        try:
            print(resolve_model(f"builtin://{name}", progress=print, dtype=dtype))
        except ModelSourceError as exc:
            print(f"modelkube models: error: {exc}", file=sys.stderr)
            return 2
    return 0


def _resolve_adapters(specs: list[AdapterSpec]) -> tuple[tuple[AdapterSpec, Path], ...]:
    from modelkube_serving.models.uri import resolve_adapter

    names = [spec.name for spec in specs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise AdapterSpecError(f"--adapter names {', '.join(twice)} more than once")
    return tuple((spec, resolve_adapter(spec.uri)) for spec in specs)


def _upstream(args: argparse.Namespace) -> "UpstreamTarget | None":
    """Proxy mode's target, or None to serve --model; mixing the two is an error."""
    from modelkube_serving.upstream.providers import UpstreamConfigError, resolve_upstream

    if args.upstream_provider is None:
        if args.model is None:
            raise UpstreamConfigError("give --model, or --upstream-provider for proxy mode")
        if args.upstream_model or args.upstream_base_url:
            raise UpstreamConfigError(
                "--upstream-model and --upstream-base-url need --upstream-provider"
            )
        return None
    if args.model is not None:
        raise UpstreamConfigError("--model and --upstream-provider exclude each other")
    if args.adapter or args.fine_tuning_api:
        raise UpstreamConfigError("adapters and the fine-tuning API need a local --model")
    if not args.upstream_model:
        raise UpstreamConfigError("--upstream-provider needs --upstream-model")
    if args.upstream_ca_file is not None:
        _check_ca_file(args.upstream_ca_file)
    api_key = os.environ.get(API_KEY_ENV)
    return resolve_upstream(
        args.upstream_provider, args.upstream_base_url, args.upstream_model, api_key
    )


def _check_ca_file(path: Path) -> None:
    from modelkube_serving.upstream.providers import UpstreamConfigError

    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise UpstreamConfigError(f"cannot read --upstream-ca-file {path}: {exc.strerror}") from exc
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise UpstreamConfigError(f"--upstream-ca-file {path} holds no PEM certificate")


def parse_serve_args(argv: list[str]) -> argparse.Namespace:
    """`modelkube serve` arguments, as the command line takes them (also for in-process tests)."""
    return _parser().parse_args(["serve", *argv])


def serve_config(args: argparse.Namespace) -> "ServeConfig":
    """The runtime's configuration from `serve` arguments; raises the setup errors `_serve`
    turns into one line and exit 2."""
    from modelkube_serving.app import ServeConfig
    from modelkube_serving.auth import load_api_keys
    from modelkube_serving.models.uri import resolve_model
    from modelkube_serving.programs.modules import load_programs
    from modelkube_serving.services.fine_tuning import fine_tuning_settings

    log = logging.getLogger("modelkube.serve")
    keys = load_api_keys(args.api_keys_file) if args.api_keys_file else ()
    upstream = _upstream(args)
    fine_tuning = (
        fine_tuning_settings(
            args.fine_tuning_output_claim, args.fine_tuning_base_model or args.model
        )
        if args.fine_tuning_api
        else None
    )
    path = (
        resolve_model(args.model, progress=log.info, dtype=args.dtype) if upstream is None else None
    )
    engine = _engine(args.engine, path)
    adapters = _resolve_adapters(args.adapter)
    programs = load_programs(args.programs_file) if args.programs_file else ()
    if not keys:
        log.warning(
            "no API keys configured: /v1 is open to anyone who can reach port %d", args.port
        )
    return ServeConfig(
        model_path=path,
        model_name=args.served_model_name or served_name(args.model or args.upstream_model),
        max_concurrent_requests=args.max_concurrent_requests,
        max_queued_requests=args.max_queued_requests,
        max_queue_wait_s=args.max_queue_wait,
        requests_per_minute=args.rate_limit_rpm,
        tokens_per_minute=args.rate_limit_tpm,
        api_keys=keys,
        context_length=args.context_length,
        prefix_cache_bytes=args.prefix_cache_mb << 20 if args.prefix_cache_mb else None,
        adapters=adapters,
        adapters_file=args.adapters_file,
        fine_tuning=fine_tuning,
        programs=programs,
        programs_file=args.programs_file,
        upstream=upstream,
        upstream_timeout_s=args.upstream_timeout,
        upstream_retries=args.upstream_retries,
        upstream_breaker=(args.upstream_breaker_failures, args.upstream_breaker_cooldown),
        upstream_ca_file=args.upstream_ca_file,
        vllm_metrics=args.vllm_metrics,
        engine=engine,
        engine_threads=args.engine_threads,
    )


def _engine(requested: str, path: Path | None) -> str:
    """The engine that will serve; a model it cannot serve is a setup error now, not later."""
    from modelkube_serving.engine.choice import choose_engine
    from modelkube_serving.engine.llamacpp_engine import gguf_source

    if path is None:  # proxy mode: no engine
        return requested
    kind = choose_engine(requested, path)
    if kind == "llamacpp":
        gguf_source(path)
    return kind


def _serve(args: argparse.Namespace) -> int:
    import faulthandler

    import uvicorn

    from modelkube_serving.app import create_app
    from modelkube_serving.auth import KeyFileError
    from modelkube_serving.models.uri import ModelSourceError
    from modelkube_serving.programs.spec import ProgramSpecError
    from modelkube_serving.server import DrainingServer
    from modelkube_serving.services.fine_tuning import FineTuningSetupError
    from modelkube_serving.upstream.providers import UpstreamConfigError

    try:
        config = serve_config(args)
    except (
        KeyFileError,
        ModelSourceError,
        AdapterSpecError,
        FineTuningSetupError,
        ProgramSpecError,
        UpstreamConfigError,
    ) as exc:
        print(f"modelkube serve: error: {exc}", file=sys.stderr)
        return 2
    uv_config = uvicorn.Config(
        "modelkube_serving.app:create_app",
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        backlog=2048,
        timeout_graceful_shutdown=5,
        access_log=False,
    )
    # A native crash (an engine's C++ or Rust) then leaves every thread's Python stack in the
    # pod's log, not only an exit code.
    faulthandler.enable()
    server = DrainingServer(uv_config, args.drain_grace_period)
    app = create_app(config, on_fatal=server.fail)
    server.config.app = app
    server.config.loaded = False
    server.runtime = app.state.runtime
    server.run()
    return server.exit_code
