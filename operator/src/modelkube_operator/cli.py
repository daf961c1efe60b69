"""`modelkube operator` and `modelkube crds`, registered into the `modelkube` command."""

import argparse
import asyncio
import re
import sys
from pathlib import Path

import yaml

from modelkube_operator.api import GROUP
from modelkube_operator.api.crd import KINDS, build_crd


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser("operator", help="run the Kubernetes operator")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument("--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--liveness", default="http://0.0.0.0:8080/healthz", help="kopf's liveness endpoint"
    )
    parser.set_defaults(run=_run_operator)


def register_crds(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser("crds", help="print or write the CRDs generated from the API models")
    parser.add_argument("--write", type=Path, metavar="DIR", help="write one YAML file per CRD")
    parser.set_defaults(run=_run_crds)


# YAML 1.2 readers (the API server's among them) take these for numbers; PyYAML's 1.1 does not.
_NUMBER_LIKE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "'" if _NUMBER_LIKE.match(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(obj: object) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=100)


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


def _run_operator(args: argparse.Namespace) -> int:
    import kopf

    import modelkube_operator.handlers  # noqa: F401 - importing registers the handlers

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
        )
    )
    return 0
