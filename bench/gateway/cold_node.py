"""`python -m bench.gateway.cold_node`: the first answer from zero replicas on the real node,
through the gateway the chart deploys (tests/node/gateway_release.py), split into its legs:

- scale: the request sent to the gateway's Service, which patches the ModelService's /scale
  to 1, until the operator has the Deployment at 1 replica;
- schedule: from there until the scheduler binds the pod to the node;
- container start: until the runtime's first log line (sandbox, image, process start and
  imports; the log's timestamps are containerd's, on this machine's clock);
- model load: until the runtime logs its model loaded;
- Ready: until the pod reads Ready (kubelet's readiness probe on /readyz);
- first token: until the first streamed token arrives through the gateway (the
  EndpointSlice update, the gateway's watch, the forward, the prefill).

Scale, schedule and Ready are seen by polling the API server every POLL_S, so each boundary
between them is good to about that. Each round starts from no pod at all. Starts its own
control plane and real node: run it under `flock /tmp/modelkube-real-node.lock`, as the
real-node tests. Prints the legs per round and a median/min/max table; writes JSON
(bench/results/gateway_cold_node.json).
"""

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from modelkube_operator.api import API_VERSION
from modelkube_operator.k8s.client import Kube
from modelkube_operator.k8s.credentials import load_credentials

from bench.gateway.report import legs_table
from tests.controlplane.cluster import ControlPlane
from tests.gateway.harness import model_service
from tests.node.cluster import REPO, imported, start_control_plane, start_node
from tests.node.gateway_release import SERVING, SMALL, install
from tests.node.node import RealNode, why_no_containers
from tests.node.startup import stamp

NAME = "cold"
SELECTOR = f"modelkube.io/modelservice={NAME}"
POLL_S = 0.02
WAIT_S = 300.0
LEGS = ("scale", "schedule", "container start", "model load", "Ready", "first token")


def _log(message: str) -> None:
    print(f"[bench.gateway.cold_node] {message}", file=sys.stderr, flush=True)


async def _until(probe: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """When the probe first found something (this machine's clock), and what."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = await probe()
        if found:
            return time.time(), found
        await asyncio.sleep(POLL_S)
    raise TimeoutError(f"{probe.__name__} never came")


async def _first_token(http: httpx.AsyncClient, gateway: str) -> float:
    body = {
        "model": NAME,
        "max_tokens": 4,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    async with http.stream("POST", f"{gateway}/v1/chat/completions", json=body) as answer:
        if answer.status_code != 200:
            raise RuntimeError(f"{answer.status_code}: {(await answer.aread()).decode()}")
        async for line in answer.aiter_lines():
            if line.startswith("data: ") and '"content"' in line:
                return time.time()
    raise RuntimeError("the stream ended without a token")


async def _round(kube: Kube, cp: ControlPlane, gateway: str) -> dict[str, float]:
    async def scaled() -> bool:
        deployment = await kube.get("apps/v1", "Deployment", SERVING, NAME)
        return bool(deployment and deployment["spec"].get("replicas", 0) >= 1)

    async def bound() -> str | None:
        pods = await kube.list("v1", "Pod", SERVING, SELECTOR)
        return next((p["metadata"]["name"] for p in pods if p["spec"].get("nodeName")), None)

    async with httpx.AsyncClient(timeout=WAIT_S) as http:
        sent = time.time()
        answer = asyncio.create_task(_first_token(http, gateway))
        t_scaled, _ = await _until(scaled)
        t_bound, name = await _until(bound)

        async def ready() -> bool:
            pod = await kube.get("v1", "Pod", SERVING, name) or {}
            statuses = pod.get("status", {}).get("containerStatuses") or [{}]
            return bool(statuses[0].get("ready"))

        t_ready, _ = await _until(ready)
        t_first = await answer
    logs = await asyncio.to_thread(
        cp.kubectl, "logs", "-n", SERVING, name, "-c", "runtime", "--timestamps"
    )
    lines = logs.stdout.splitlines()
    started = stamp(lines[0].split()[0])
    loaded = next(stamp(line.split()[0]) for line in lines if f"model {NAME} ready (" in line)
    return {
        "scale": t_scaled - sent,
        "schedule": t_bound - t_scaled,
        "container start": started - t_bound,
        "model load": loaded - started,
        "Ready": t_ready - loaded,
        "first token": t_first - t_ready,
        "total": t_first - sent,
    }


async def _to_zero(kube: Kube) -> None:
    """Scaled to zero, and no pod left (not even one terminating): the next round is cold."""
    await kube.merge_patch(
        API_VERSION, "ModelService", SERVING, NAME, {"spec": {"replicas": 0}}, subresource="scale"
    )

    async def gone() -> bool:
        return not await kube.list("v1", "Pod", SERVING, SELECTOR)

    await _until(gone)


async def _rounds(cp: ControlPlane, gateway: str, n: int) -> list[dict[str, float]]:
    kube = Kube(load_credentials(str(cp.admin_kubeconfig)), "bench-cold-node")
    try:

        async def deployed() -> bool:
            return await kube.get("apps/v1", "Deployment", SERVING, NAME) is not None

        await _until(deployed)  # at zero replicas: the operator's work before any round
        found = []
        for number in range(n):
            found.append(await _round(kube, cp, gateway))
            _log(f"round {number}: " + ", ".join(f"{k} {v:.3f}" for k, v in found[-1].items()))
            await _to_zero(kube)
        return found
    finally:
        await kube.close()


def _table(rounds: list[dict[str, float]]) -> str:
    return "\n".join(
        [
            f"First answer from zero replicas on the real node, through the chart's gateway (s),"
            f" {len(rounds)} rounds:",
            "",
            legs_table(rounds, (*LEGS, "total")),
        ]
    )


def _serve(cp: ControlPlane, node: RealNode) -> str:
    """The operator and runtime images in containerd, the chart with its gateway, and the
    ModelService `cold` at zero replicas: the gateway's URL."""
    imported(node, "operator")
    imported(node, "runtime")
    release = install(cp, node)
    scaling = {"minReplicas": 0, "maxReplicas": 1, "target": 4, "idleSeconds": 3600}
    ms = model_service(SERVING, NAME, replicas=0, autoscaling=scaling, runtime={"resources": SMALL})
    cp.kubectl("apply", "-f", "-", stdin=json.dumps(ms))
    return release.url


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gateway.cold_node")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--output", type=Path, default=REPO / "bench/results/gateway_cold_node.json")
    args = p.parse_args(argv)
    if (why := why_no_containers()) is not None:
        p.exit(1, f"this machine cannot run containers: {why}\n")
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-cold-node-"))
    cp = start_control_plane(work / "control-plane")
    node = None
    try:
        node = start_node(work / "node", cp)
        gateway = _serve(cp, node)
        rounds = asyncio.run(_rounds(cp, gateway, args.rounds))
        print(_table(rounds))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"rounds": rounds}, indent=2) + "\n")
    finally:
        if node is not None:
            node.stop()
        cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
