"""The real `helm` binary (built from its Go module by tests.controlplane.binaries) on the chart."""

import os
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.controlplane.binaries import MODULES, binary_dir

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelkube"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
# The control plane's version (tests/controlplane/gomod/kubernetes), for kubeVersion checks.
KUBE_VERSION = "1.36.0"
RELEASE = "modelkube"
NAMESPACE = "modelkube-system"
HELM_HOMES = ("CACHE", "CONFIG", "DATA")


def helm_binary() -> Path:
    module = next(m for m in MODULES if m.directory == "helm")
    path = binary_dir(module) / "helm"
    if not path.exists():
        raise RuntimeError("helm is not built: run `make controlplane`")
    return path


def helm(*args: str, kubeconfig: Path | None = None, check: bool = True) -> str:
    """Run helm with its config, cache and data in a temporary directory, never under ~."""
    home = Path(tempfile.gettempdir()) / "modelkube-helm-home"
    env = {**os.environ, **{f"HELM_{k}_HOME": str(home / k.lower()) for k in HELM_HOMES}}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    done = subprocess.run(
        [str(helm_binary()), *args], env=env, capture_output=True, text=True, timeout=300
    )
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


@cache
def render(values: Path | None = None, *sets: str) -> tuple[dict[str, Any], ...]:
    """`helm template` of the chart, with hooks (the test pod), as parsed documents."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    args += ["--kube-version", KUBE_VERSION]
    if values is not None:
        args += ["--values", str(values)]
    for item in sets:
        args += ["--set", item]
    text = helm(*args)
    return tuple(doc for doc in yaml.safe_load_all(text) if doc)


def pod_specs(docs: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    """Every pod spec the documents would run, by `kind/name`."""
    found: dict[str, dict[str, Any]] = {}
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "Pod":
            found[name] = doc["spec"]
        elif doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
            found[name] = doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            found[name] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return found


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]
