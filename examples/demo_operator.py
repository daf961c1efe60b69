"""`make demo`, part two: a ModelService on a real local control plane, reconciled by the operator.

etcd, kube-apiserver, controller-manager, scheduler and kwok (simulated nodes) run on 127.0.0.1,
built from their Go modules; the operator runs under its own ClusterRole. Where this machine
can run containers (root, containerd, runc), a real node joins (tests/node) and the pods run
the runtime image `make images` builds, answering the openai client through their Service;
elsewhere they run on kwok's simulated node, and one line says why.
"""

import sys
import tempfile
import time
from pathlib import Path

import openai

from tests.controlplane.cluster import FAKE_NODE, ControlPlane
from tests.node import build_images
from tests.node.node import RealNode, why_no_containers
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


def start_real_node(cp: ControlPlane, workdir: Path) -> RealNode | None:
    """A real node with the runtime image, or None (and one line why) for kwok's."""
    why = why_no_containers()
    if why is None:
        say("starting a real node: containerd, runc, kubelet, kube-proxy; the runtime image")
        node = RealNode(workdir / "node", cp).start()
        try:
            archive = build_images.build("runtime", build_images.find_uv(), build_images.Log())
            node.import_image(archive)
        except BaseException:
            node.stop()
            raise
        cp.kubectl("cordon", FAKE_NODE["metadata"]["name"])  # type: ignore[index]
        show(cp, "get", "nodes", "-o", "wide")
        return node
    print(f"no real node ({why}): the pods run on kwok's simulated node")
    return None


def ask_through_the_service(cp: ControlPlane) -> None:
    service = get_json(cp, "service", "tiny") or {}
    url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}/v1"
    say(f"the openai client, through the Service's ClusterIP {url}")
    client = openai.OpenAI(base_url=url, api_key="unused")
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hello!"}], max_tokens=12
    )
    print(f"tiny answered: {reply.choices[0].message.content!r}")


def main(workdir: Path) -> None:
    say("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok,")
    print("with the CRDs generated from the operator's pydantic models (crds/)")
    started = time.monotonic()
    cp = ControlPlane(workdir).start(crds=REPO / "crds")
    operator: OperatorProcess | None = None
    node: RealNode | None = None
    try:
        print(f"control plane ready in {time.monotonic() - started:.1f}s at {cp.server}")
        show(cp, "get", "crd")
        node = start_real_node(cp, workdir)
        say("running `modelkube operator` as its ServiceAccount (ClusterRole from rbac.py)")
        operator = OperatorProcess(
            operator_kubeconfig(cp), workdir / "operator.log", namespaces="default"
        )
        operator.start()
        say("kubectl apply -f examples/modelservice-tiny.yaml")
        show(cp, "apply", "-f", str(REPO / "examples" / "modelservice-tiny.yaml"))
        applied = time.monotonic()
        wait_until(lambda: ready(cp), 60 if node is None else 600, "tiny Ready")
        print(f"Ready after {time.monotonic() - applied:.1f}s")
        show(cp, "get", "modelkube")
        show(
            cp,
            "get",
            "deploy,svc,cm,pdb,pods",
            "-o",
            "wide",
            "-l",
            "modelkube.io/modelservice=tiny",
        )
        if node is not None:
            ask_through_the_service(cp)
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
        if node is not None:
            node.stop()
        cp.stop()
    say("control plane stopped")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="modelkube-demo-") as tmp:
        main(Path(tmp))
    sys.exit(0)
