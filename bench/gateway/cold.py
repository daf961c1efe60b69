"""`python -m bench.gateway.cold`: the first answer from zero replicas, split into its legs, on
the test control plane with the real operator, controllers, scheduler and kwok:

- scale: the request reaching the gateway, which patches the ModelService's /scale to 1,
  until the operator has the Deployment at 1 replica;
- schedule: from there until the ReplicaSet's pod is bound to a node by the scheduler;
- load: a runtime process started for that pod (playing its container) until /readyz says
  the model is loaded;
- first token: a streamed request straight to that runtime, to its first token.

kwok's pods run nothing and read Ready as soon as they are scheduled, so the Service's
EndpointSlice shows a ready endpoint (kwok's pod IP) long before any model is loaded: the
request the gateway holds is released to that address and fails. The first-token leg is
therefore sent straight to the runtime; a real node's readiness probe would gate the gateway
on the same /readyz. Prints the legs per round and their medians; writes JSON
(bench/results/gateway_cold.json).
"""

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from modelkube_operator.k8s.client import Kube
from modelkube_operator.k8s.credentials import load_credentials

from bench.gateway.__main__ import _start_gateway
from bench.gateway.report import legs_table
from tests.controlplane.cluster import ControlPlane
from tests.gateway.harness import model_service
from tests.operator.harness import REPO, OperatorProcess, operator_kubeconfig
from tests.serving.runtime_process import RuntimeProcess

NAMESPACE = "test-cold"  # the operator serves test-* namespaces
NAME = "cold"
POLL_S = 0.01
WAIT_S = 120.0
LEGS = ("scale", "schedule", "load", "first token")


def _log(message: str) -> None:
    print(f"[bench.gateway.cold] {message}", file=sys.stderr, flush=True)


async def _until(probe: Any) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = await probe()
        if found:
            return found
        await asyncio.sleep(POLL_S)
    raise TimeoutError(f"{probe.__name__} never came")


async def _round(kube: Kube, gateway: str, work: Path, number: int) -> dict[str, float]:
    async def scaled() -> bool:
        deployment = await kube.get("apps/v1", "Deployment", NAMESPACE, NAME)
        return bool(deployment and deployment["spec"].get("replicas", 0) >= 1)

    async def bound() -> bool:
        pods = await kube.list("v1", "Pod", NAMESPACE, f"modelkube.io/modelservice={NAME}")
        return any(p["spec"].get("nodeName") for p in pods)

    body = {"model": NAME, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=300) as http:
        # Through the gateway, which wakes the model; its answer is kwok's (see above).
        trigger = asyncio.create_task(http.post(f"{gateway}/v1/chat/completions", json=body))
        await _until(scaled)
        t_scale = time.perf_counter()
        await _until(bound)
        t_bound = time.perf_counter()
        args = ["--host", "127.0.0.1", "--model", "builtin://tiny", "--served-model-name", NAME]
        pod = RuntimeProcess(args, work / f"cold-{number}.log")
        t_start = time.perf_counter()
        await asyncio.to_thread(pod.start, wait_ready=True)
        t_loaded = time.perf_counter()
        try:
            stream = {**body, "stream": True}
            async with http.stream("POST", f"{pod.url}/v1/chat/completions", json=stream) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: ") and '"content"' in line:
                        break
            t_first = time.perf_counter()
        finally:
            pod.stop()
            trigger.cancel()
    return {
        "scale": t_scale - started,
        "schedule": t_bound - t_scale,
        "load": t_loaded - t_start,
        "first token": t_first - t_loaded,
        "total": (t_scale - started) + (t_bound - t_scale) + (t_loaded - t_start)
        + (t_first - t_loaded),
    }  # fmt: skip


async def _to_zero(kube: Kube) -> None:
    await kube.merge_patch("modelkube.io/v1alpha1", "ModelService", NAMESPACE, NAME,
                           {"spec": {"replicas": 0}}, subresource="scale")  # fmt: skip

    async def gone() -> bool:
        pods = await kube.list("v1", "Pod", NAMESPACE, f"modelkube.io/modelservice={NAME}")
        return not pods

    await _until(gone)


async def _rounds(cp: ControlPlane, gateway: str, work: Path, n: int) -> list[dict[str, float]]:
    kube = Kube(load_credentials(str(cp.admin_kubeconfig)), "bench-cold")
    try:
        found = []
        for number in range(n):
            found.append(await _round(kube, gateway, work, number))
            _log(f"round {number}: {found[-1]}")
            await _to_zero(kube)
        return found
    finally:
        await kube.close()


def _table(rounds: list[dict[str, float]]) -> str:
    lines = [
        "First answer from zero replicas (s): median of "
        f"{len(rounds)} rounds (scale: gateway's /scale patch until the Deployment has a "
        "replica; schedule: until the pod is bound; load: runtime start to model loaded; "
        "first token: straight to the loaded runtime)",
        "",
        legs_table(rounds, (*LEGS, "total")),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gateway.cold")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--output", type=Path, default=REPO / "bench/results/gateway_cold.json")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-cold-"))
    cp = ControlPlane(work / "cp").start(crds=REPO / "crds")
    operator = OperatorProcess(operator_kubeconfig(cp), work / "operator.log")
    gateway_proc = None
    try:
        operator.start()
        cp.kubectl("create", "namespace", NAMESPACE)
        scaling = {"minReplicas": 0, "maxReplicas": 1, "target": 4, "idleSeconds": 3600}
        ms = model_service(NAMESPACE, NAME, replicas=0, autoscaling=scaling)
        cp.kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(ms))
        gateway_proc, gateway = _start_gateway(cp, work, NAMESPACE)
        rounds = asyncio.run(_rounds(cp, gateway, work, args.rounds))
        print(_table(rounds))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"rounds": rounds}, indent=2) + "\n")
    finally:
        if gateway_proc is not None:
            gateway_proc.terminate()
            gateway_proc.wait(30)
        operator.stop()
        cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
