"""`make demo`, part two: a ModelService on a real local control plane, reconciled by the operator.

etcd, kube-apiserver, controller-manager, scheduler and kwok (simulated nodes) run on 127.0.0.1,
built from their Go modules; the operator runs under its own ClusterRole.
"""

import sys
import tempfile
import time
from pathlib import Path

from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import (
    REPO,
    OperatorProcess,
    get_json,
    operator_kubeconfig,
    wait_until,
)

CONDITIONS_JSONPATH = (
    'jsonpath={range .status.conditions[*]}{.type}={.status} ({.reason}): {.message}{"\\n"}{end}'
)


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def show(cp: ControlPlane, *args: str) -> None:
    print(f"$ kubectl {' '.join(args)}")
    result = cp.kubectl(*args, check=False)
    print((result.stdout or result.stderr).rstrip())


def ready(cp: ControlPlane) -> bool:
    ms = get_json(cp, "modelservice", "tiny") or {}
    conds = {c["type"]: c["status"] for c in ms.get("status", {}).get("conditions", [])}
    return ms.get("status", {}).get("readyReplicas") == 2 and conds.get("Ready") == "True"


def main(workdir: Path) -> None:
    say("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok,")
    print("with the CRDs generated from the operator's pydantic models (crds/)")
    started = time.monotonic()
    cp = ControlPlane(workdir).start(crds=REPO / "crds")
    operator: OperatorProcess | None = None
    try:
        print(f"control plane ready in {time.monotonic() - started:.1f}s at {cp.server}")
        show(cp, "get", "crd")
        say("running `modelkube operator` as its ServiceAccount (ClusterRole from rbac.py)")
        operator = OperatorProcess(
            operator_kubeconfig(cp), workdir / "operator.log", namespaces="default"
        )
        operator.start()
        say("kubectl apply -f examples/modelservice-tiny.yaml")
        show(cp, "apply", "-f", str(REPO / "examples" / "modelservice-tiny.yaml"))
        applied = time.monotonic()
        wait_until(lambda: ready(cp), 60, "tiny Ready")
        print(f"Ready after {time.monotonic() - applied:.1f}s")
        show(cp, "get", "modelkube")
        show(cp, "get", "deploy,svc,cm,pdb,pods", "-l", "modelkube.io/modelservice=tiny")
        show(
            cp,
            "get",
            "modelservice",
            "tiny",
            "-o",
            CONDITIONS_JSONPATH,
        )
        say(
            "kubectl delete modelservice tiny: "
            "ownerReferences let the garbage collector remove the rest"
        )
        show(cp, "delete", "modelservice", "tiny")
        gone_after = time.monotonic()
        wait_until(lambda: get_json(cp, "deployment", "tiny") is None, 30, "children gone")
        print(f"children garbage-collected after {time.monotonic() - gone_after:.1f}s")
        show(cp, "get", "deploy,svc,cm,pdb", "-l", "modelkube.io/modelservice=tiny")
    finally:
        if operator is not None:
            operator.stop()
        cp.stop()
    say("control plane stopped")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="modelkube-demo-") as tmp:
        main(Path(tmp))
    sys.exit(0)
