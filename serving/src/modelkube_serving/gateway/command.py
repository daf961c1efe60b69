"""`modelkube gateway`: its flags, and a run that exits with one line on bad input."""

import argparse
import sys
from pathlib import Path
from typing import Any

from modelkube_serving.argtypes import non_negative, positive, positive_float
from modelkube_serving.gateway.routing import DEFAULT_BOUND_FACTOR

EXIT_BAD_INPUT = 2
EXIT_STARTUP_FAILURE = 3  # uvicorn.run's, e.g. the port taken
DRAIN_SECONDS = 30


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "gateway", help="one OpenAI endpoint for every ModelService, routed by model"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--namespace", help="the ModelServices of one namespace (default: all)")
    p.add_argument("--kubeconfig", help="default: in a pod its service account, else ~/.kube")
    p.add_argument("--api-keys-file", type=Path, help="one key per line; /v1 then requires one")
    p.add_argument(
        "--load-bound",
        type=_bound,
        default=DEFAULT_BOUND_FACTOR,
        help="a conversation stays on its pod while the pod's in-flight requests stay within "
        "this many times the mean (consistent hashing with bounded loads)",
    )
    p.add_argument(
        "--hold-timeout",
        type=positive_float,
        default=120.0,
        help="seconds a request waits for a model with no ready replica (scaling from zero)",
    )
    p.add_argument(
        "--response-timeout",
        type=positive_float,
        default=300.0,
        help="seconds to wait for a pod's answer to begin",
    )
    p.add_argument(
        "--drain-seconds",
        type=non_negative,
        default=DRAIN_SECONDS,
        help="seconds a stopping gateway lets answers in flight finish (requests held for a "
        "model scaling from zero get a 503 with Retry-After at once)",
    )
    p.add_argument("--max-concurrent-requests", type=positive, default=1024)
    p.add_argument("--max-queued-requests", type=non_negative, default=4096)
    p.add_argument("--max-queue-wait", type=positive_float, default=60.0)
    p.add_argument("--rate-limit-rpm", type=positive, help="requests per minute per API key")
    p.add_argument("--rate-limit-tpm", type=positive, help="tokens per minute per API key")
    p.add_argument(
        "--front",
        choices=["uvicorn", "native"],
        default="native",
        help="what serves the gateway's port: the Rust core's HTTP server (native), which "
        "relays what it can route at once itself and the rest to the same app on a loopback "
        "port, or uvicorn alone",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(run=run)


def _bound(text: str) -> float:
    value = positive_float(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value:g}")
    return value


def run(args: argparse.Namespace) -> int:
    import uvicorn
    from modelkube_operator.k8s.client import Kube
    from modelkube_operator.k8s.credentials import CredentialsError, load_credentials

    from modelkube_serving.auth import KeyFileError, load_api_keys
    from modelkube_serving.gateway.app import GatewayConfig, create_gateway
    from modelkube_serving.gateway.front import FrontedServer
    from modelkube_serving.gateway.server import GatewayServer
    from modelkube_serving.services.admission import AdmissionLimits

    try:
        keys = load_api_keys(args.api_keys_file) if args.api_keys_file else ()
        credentials = load_credentials(args.kubeconfig)
    except (KeyFileError, CredentialsError) as exc:
        print(f"modelkube gateway: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    config = GatewayConfig(
        namespace=args.namespace,
        limits=AdmissionLimits(
            max_running=args.max_concurrent_requests,
            max_queued=args.max_queued_requests,
            max_queue_wait_s=args.max_queue_wait,
            requests_per_minute=args.rate_limit_rpm,
            tokens_per_minute=args.rate_limit_tpm,
        ),
        api_keys=keys,
        bound_factor=args.load_bound,
        hold_timeout_s=args.hold_timeout,
        response_timeout_s=args.response_timeout,
    )
    app = create_gateway(config, Kube(credentials, field_manager="modelkube-gateway"))
    options = server_options(args.log_level, args.drain_seconds)
    if args.front == "native":
        fronted = FrontedServer(
            uvicorn.Config(app, **options),
            app.state.scaler.stop_holding,
            args.host,
            args.port,
            args.response_timeout + args.hold_timeout,
        )
        fronted.run()
        return 0 if fronted.started and not fronted.front_failed else EXIT_STARTUP_FAILURE
    server = GatewayServer(
        uvicorn.Config(app, host=args.host, port=args.port, **options),
        app.state.scaler.stop_holding,
    )
    server.run()
    return 0 if server.started else EXIT_STARTUP_FAILURE


def server_options(log_level: str, drain_s: int = DRAIN_SECONDS) -> dict[str, Any]:
    """uvicorn's settings for the gateway; bench/gateway/floor.py serves its bare
    pass-through with the same ones, so the two differ only by the gateway's own code."""
    return {
        "log_level": log_level,
        "backlog": 2048,
        "timeout_graceful_shutdown": drain_s,
        "access_log": False,
        # Nothing here reads the client's address (keys identify clients), so uvicorn's
        # X-Forwarded-For rewriting would be a middleware call per request for nothing.
        "proxy_headers": False,
    }
