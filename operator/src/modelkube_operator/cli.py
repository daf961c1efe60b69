"""`modelkube operator`, `modelkube crds` and `modelkube chart`, registered into `modelkube`."""

import argparse
import asyncio
import sys
from pathlib import Path

from modelkube_operator.api import GROUP
from modelkube_operator.api.crd import KINDS, build_crd
from modelkube_operator.yaml_dump import to_yaml


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser("operator", help="run the Kubernetes operator")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument("--all-namespaces", action="store_true", help="watch every namespace")
    # Metrics on 8080 and health on 8081, as controller-runtime operators do.
    parser.add_argument(
        "--liveness", default="http://0.0.0.0:8081/healthz", help="kopf's liveness endpoint"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=8080,
        metavar="PORT",
        help="serve Prometheus metrics on 0.0.0.0:PORT/metrics (0: off)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="debug shows every watch event kopf receives and every handler it runs",
    )
    parser.set_defaults(run=_run_operator)


def register_crds(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser("crds", help="print or write the CRDs generated from the API models")
    parser.add_argument("--write", type=Path, metavar="DIR", help="write one YAML file per CRD")
    parser.set_defaults(run=_run_crds)


def register_chart(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser(
        "chart", help="regenerate the chart's CRDs, ClusterRole, values schema and README"
    )
    parser.add_argument("--write", type=Path, metavar="DIR", required=True, help="the chart")
    parser.set_defaults(run=_run_chart)


def crd_files() -> dict[str, str]:
    header = (
        "# Generated from operator/src/modelkube_operator/api by `modelkube crds --write crds/`.\n"
    )
    return {f"{GROUP}_{info.plural}.yaml": header + to_yaml(build_crd(info)) for info in KINDS}


def _run_crds(args: argparse.Namespace) -> int:
    files = crd_files()
    if args.write is None:
        sys.stdout.write("---\n".join(files.values()))
        return 0
    args.write.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.write / name).write_text(text)
        print(f"wrote {args.write / name}")
    return 0


def _run_chart(args: argparse.Namespace) -> int:
    from modelkube_operator.chart import chart_files

    for name, text in chart_files(args.write).items():
        path = args.write / name
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    return 0


def _run_operator(args: argparse.Namespace) -> int:
    import kopf

    import modelkube_operator.handlers.registration  # noqa: F401 - importing registers them

    if not args.all_namespaces and not args.namespace:
        print(
            "modelkube operator: error: pass --namespace NS (repeatable) or --all-namespaces",
            file=sys.stderr,
        )
        return 2
    asyncio.run(
        kopf.operator(
            clusterwide=args.all_namespaces,
            namespaces=args.namespace,
            standalone=True,
            liveness_endpoint=args.liveness,
            memo=kopf.Memo(metrics_port=args.metrics_port),
        )
    )
    return 0
