"""`python -m bench.gateway`: 4 runtime replicas on builtin://tiny behind one ModelService on
the test control plane; 64 four-turn chat sessions sharing a long system prompt, sent once
with direct random balancing (what a Service does) and once through `modelkube gateway`.
Prints the table and writes JSON (bench/results/gateway.json)."""

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.gateway.report import summary, table
from bench.gateway.sessions import run_sessions, system_prompt
from modelkube_serving.gateway.routing import choose, request_key
from tests.controlplane.cluster import ControlPlane
from tests.gateway.harness import endpoint, endpoint_slice, host_address, model_service
from tests.operator.harness import REPO
from tests.serving.runtime_process import RuntimeProcess, free_port
from tests.waiting import wait_http_ok

NAMESPACE = "bench"


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.gateway")
    p.add_argument("--replicas", type=int, default=4)
    p.add_argument("--sessions", type=int, default=64)
    p.add_argument("--turns", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=16, help="sessions at a time")
    p.add_argument("--system-words", type=int, default=300)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--latency-requests", type=int, default=200)
    p.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "gateway.json")
    return p.parse_args(argv)


def _log(message: str) -> None:
    print(f"[bench.gateway] {message}", file=sys.stderr, flush=True)


def _start_pods(n: int, logs: Path) -> list[RuntimeProcess]:
    args = ["--host", "0.0.0.0", "--model", "builtin://tiny", "--served-model-name", "chat"]
    pods = [RuntimeProcess(args, logs / f"pod-{i}.log").start(wait_ready=False) for i in range(n)]
    for pod in pods:
        pod.wait_ready(300)
    return pods


def _start_gateway(cp: ControlPlane, logs: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [
        sys.executable, "-m", "modelkube_serving", "gateway", "--port", str(port),
        "--kubeconfig", str(cp.admin_kubeconfig), "--namespace", NAMESPACE,
        "--log-level", "warning",
    ]  # fmt: skip
    with (logs / "gateway.log").open("ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/healthz", lambda: None if proc.poll() is None else "exited",
                 lambda: (logs / "gateway.log").read_text(), 120)  # fmt: skip
    return proc, url


def _publish(cp: ControlPlane, pods: list[RuntimeProcess]) -> None:
    cp.kubectl("create", "namespace", NAMESPACE)
    objects = [model_service(NAMESPACE, "chat", replicas=len(pods))]
    objects += [endpoint_slice(NAMESPACE, "chat", pod.port) for pod in pods]
    stdin = "\n---\n".join(json.dumps(o) for o in objects)
    cp.kubectl("apply", "--server-side", "-f", "-", stdin=stdin)


def _wait_models(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = {"model": "chat", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
        answer = httpx.post(f"{url}/v1/chat/completions", timeout=30, json=body)
        if answer.status_code == 200:
            return
        time.sleep(0.2)
    raise TimeoutError("the gateway never routed to chat")


def _added_latency_ms(gateway: str, pods: list[RuntimeProcess], n: int) -> float:
    """p50 through the gateway minus p50 straight to the pod it picks, interleaved."""
    messages = [{"role": "user", "content": "ping"}]
    home = choose(request_key({"messages": messages}, ""),
                  dict.fromkeys((endpoint(p.port) for p in pods), 0), 1.25).endpoint  # fmt: skip
    direct = f"http://{home}"
    body = {"model": "chat", "max_tokens": 1, "temperature": 0, "messages": messages}
    times: dict[str, list[float]] = {"gateway": [], "direct": []}
    with httpx.Client(timeout=30) as http:
        for i in range(n * 2):
            which, url = ("gateway", gateway) if i % 2 else ("direct", direct)
            started = time.perf_counter()
            http.post(f"{url}/v1/chat/completions", json=body).raise_for_status()
            times[which].append(time.perf_counter() - started)
    return (statistics.median(times["gateway"]) - statistics.median(times["direct"])) * 1000


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    _log(f"work dir {work}; endpoints on {host_address()}")
    cp = ControlPlane(work / "cp").start(crds=REPO / "crds")
    pods: list[RuntimeProcess] = []
    gateway_proc = None
    try:
        pods = _start_pods(args.replicas, work)
        _publish(cp, pods)
        gateway_proc, gateway = _start_gateway(cp, work)
        _wait_models(gateway)
        rng = random.Random(0)
        urls = [f"http://{endpoint(p.port)}" for p in pods]
        results: dict[str, Any] = {}
        for mode, seed, pick in (
            ("direct", 1, lambda: rng.choice(urls)),
            ("gateway", 2, lambda: gateway),
        ):
            _log(f"{mode}: {args.sessions} sessions x {args.turns} turns")
            turns, wall = asyncio.run(run_sessions(
                pick, system_prompt(seed, args.system_words), args.sessions, args.turns,
                args.concurrency, args.max_tokens))  # fmt: skip
            results[mode] = summary(turns, wall)
            _log(f"{mode}: {results[mode]}")
        added = _added_latency_ms(gateway, pods, args.latency_requests)
        print(table(results["direct"], results["gateway"], added))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        payload = {"args": {k: str(v) for k, v in vars(args).items()}, **results,
                   "gateway_added_latency_p50_ms": added}  # fmt: skip
        args.output.write_text(json.dumps(payload, indent=2) + "\n")
        _log(f"results written to {args.output}")
    finally:
        if gateway_proc is not None:
            gateway_proc.terminate()
            gateway_proc.wait(30)
        for pod in pods:
            pod.stop()
        cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
