"""`python -m bench.gateway`: 4 runtime replicas on builtin://tiny (`--model`, `--engine`: the
real model on llama.cpp, where a lost history costs a real prefill) behind one ModelService on
the test control plane; 64 four-turn chat sessions sharing a long system prompt, sent once
with direct random balancing (what a Service does) and once through `modelkube gateway`, each
mode on its own replicas, one mode after the other; with `--wave N` they take turns N
sessions at a time, so that a change in the load from the rest of the machine lands on both.

Two configurations of the replicas' prefix caches, each run on freshly started replicas (on
llama.cpp only the first: its KV cells bound its cache, there is no budget to set):
- unbounded: the runtime's default budget (1 GiB), which holds every session many times over;
- bounded: `--prefix-cache-mb` set so that the replicas together hold every session's cache
  with room to spare (`--budget-factor` times their total, split over the replicas) but one
  replica holds only a part of them. The total is measured: the bytes the replicas' caches
  hold after the unbounded gateway run, where each session's cache sits on about one replica.

Each configuration runs the sessions closed-loop (a session's next turn goes as soon as its
answer ends, so the replicas are saturated and TTFT is mostly queueing), then, with
`--think-ms`, new sessions paced the way users are (a pause before each later turn), on the
same replicas: there the replicas have room, and TTFT is what the prefix cache makes it.

Prints the tables and writes JSON (bench/results/gateway.json)."""

import argparse
import asyncio
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.gateway.latency import AddedLatency, added_latency
from bench.gateway.report import LEGEND, latency_line, summary, table
from bench.gateway.sessions import (
    Think,
    Turn,
    idle_ttft,
    no_think,
    reader,
    run_sessions,
    shared_tokens,
    system_prompt,
)
from modelkube_serving.argtypes import positive
from modelkube_serving.gateway.routing import DEFAULT_BOUND_FACTOR
from modelkube_serving.metrics import VLLM_KV_CACHE_USAGE
from tests.controlplane.cluster import ControlPlane
from tests.gateway.harness import endpoint, endpoint_slice, host_address, model_service
from tests.operator.harness import REPO
from tests.serving.runtime_process import RuntimeProcess, free_port
from tests.waiting import wait_http_ok

NAMESPACE = "bench"
DEFAULT_CACHE_MB = 1024  # the MLX engine's prefix-cache budget when no flag sets one
MODES = {"direct": 1, "gateway": 2}  # each mode's seed of its system prompt


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.gateway")
    p.add_argument("--replicas", type=int, default=4)
    p.add_argument("--sessions", type=int, default=64)
    p.add_argument("--turns", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=16, help="sessions at a time")
    p.add_argument(
        "--wave",
        type=int,
        default=0,
        help="sessions a mode runs before the other takes its turn (default: all of them); "
        "on a machine shared with other work, a wave of --concurrency interleaves the modes",
    )
    p.add_argument(
        "--think-ms",
        type=int,
        default=3000,
        help="mean pause of a user before each later turn in the paced run, which follows the "
        "closed-loop one on the same replicas (exponential, fixed seed, the same for both "
        "modes); 0: no paced run",
    )
    p.add_argument("--system-words", type=int, default=300)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--latency-requests", type=int, default=200, help="rounds of the latency loop")
    p.add_argument(
        "--latency-pause-ms",
        type=float,
        default=20.0,
        help="idle time after each request of the latency loop: what one target leaves to do "
        "after its answer is over before the next is timed (0: back to back)",
    )
    p.add_argument(
        "--latency-only",
        action="store_true",
        help="only the added latency (and its floor), on the replicas as started",
    )
    p.add_argument("--budget-factor", type=float, default=1.5)
    p.add_argument(
        "--load-bound",
        type=float,
        default=DEFAULT_BOUND_FACTOR,
        help="the gateway's --load-bound (CHWBL's c)",
    )
    p.add_argument(
        "--model",
        default="builtin://tiny",
        help="the replicas' model: builtin://tiny (random weights, where prefill costs little) "
        "or builtin://smollm2-135m-instruct (the real model, where a lost history is paid)",
    )
    p.add_argument("--engine", choices=["mlx", "llamacpp"], default="mlx")
    p.add_argument(
        "--engine-threads",
        type=positive,
        default=1,
        help="llama.cpp's threads per replica (the replicas share this machine's cores)",
    )
    p.add_argument(
        "--front",
        choices=["native", "uvicorn"],
        default="native",
        help="the gateway's --front in the sessions (--latency-only times both)",
    )
    p.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "gateway.json")
    args = p.parse_args(argv)
    if args.engine == "llamacpp" and args.model == "builtin://tiny":
        p.error(
            "the llama.cpp engine: name the real model, --model builtin://smollm2-135m-instruct"
        )
    return args


def _log(message: str) -> None:
    print(f"[bench.gateway] {message}", file=sys.stderr, flush=True)


def _start_pods(
    bench: argparse.Namespace, logs: Path, cache_mb: int | None = None
) -> list[RuntimeProcess]:
    args = ["--host", "0.0.0.0", "--model", bench.model, "--served-model-name", "chat"]
    args += ["--engine", bench.engine]
    args += ["--engine-threads", str(bench.engine_threads)] if bench.engine == "llamacpp" else []
    args += ["--prefix-cache-mb", str(cache_mb)] if cache_mb else []
    n = bench.replicas
    pods = [RuntimeProcess(args, logs / f"pod-{i}.log").start(wait_ready=False) for i in range(n)]
    for pod in pods:
        pod.wait_ready(300)
    return pods


def _start_gateway(
    cp: ControlPlane,
    logs: Path,
    namespace: str = NAMESPACE,
    *,
    load_bound: float = DEFAULT_BOUND_FACTOR,
    front: str = "native",
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [
        sys.executable, "-m", "modelkube_serving", "gateway", "--port", str(port),
        "--kubeconfig", str(cp.admin_kubeconfig), "--namespace", namespace,
        "--log-level", "warning", "--load-bound", str(load_bound), "--front", front,
    ]  # fmt: skip
    log_file = logs / f"gateway-{front}.log"
    with log_file.open("ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/healthz", lambda: None if proc.poll() is None else "exited",
                 log_file.read_text, 120)  # fmt: skip
    return proc, url


def _publish(cp: ControlPlane, pods: list[RuntimeProcess]) -> None:
    cp.kubectl("create", "namespace", NAMESPACE)
    objects = [model_service(NAMESPACE, "chat", replicas=len(pods))]
    objects += [endpoint_slice(NAMESPACE, "chat", pod.port) for pod in pods]
    stdin = "\n---\n".join(json.dumps(o) for o in objects)
    cp.kubectl("apply", "--server-side", "-f", "-", stdin=stdin)


def _republish(cp: ControlPlane, pods: list[RuntimeProcess]) -> None:
    """The new replicas' endpoints in place of the old ones'."""
    selector = "kubernetes.io/service-name=chat"
    cp.kubectl("delete", "endpointslices", "-n", NAMESPACE, "-l", selector)
    objects = [endpoint_slice(NAMESPACE, "chat", pod.port) for pod in pods]
    stdin = "\n---\n".join(json.dumps(o) for o in objects)
    cp.kubectl("apply", "--server-side", "-f", "-", stdin=stdin)


def _cache_bytes(pod: RuntimeProcess, budget_bytes: int) -> float:
    """The bytes the replica's prefix cache holds, from its use of its budget."""
    text = httpx.get(f"http://{endpoint(pod.port)}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == VLLM_KV_CACHE_USAGE:
                return sample.value * budget_bytes
    raise LookupError(f"no {VLLM_KV_CACHE_USAGE} on the replica at port {pod.port}")


def _wait_models(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = {"model": "chat", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
        answer = httpx.post(f"{url}/v1/chat/completions", timeout=30, json=body)
        if answer.status_code == 200:
            return
        time.sleep(0.2)
    raise TimeoutError("the gateway never routed to chat")


def _wait_endpoints(url: str, pods: list[RuntimeProcess]) -> None:
    """Until every request the gateway routes lands on one of `pods` (the watch has dropped
    the old replicas): the new replicas' request counters account for all of them."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        before = sum(_served(p) for p in pods)
        for i in range(8):
            message = {"role": "user", "content": f"probe {i}"}
            body = {"model": "chat", "max_tokens": 1, "messages": [message]}
            httpx.post(f"{url}/v1/chat/completions", timeout=30, json=body).raise_for_status()
        if sum(_served(p) for p in pods) - before == 8:
            return
        time.sleep(0.2)
    raise TimeoutError("the gateway kept routing to replicas that were stopped")


def _served(pod: RuntimeProcess) -> float:
    text = httpx.get(f"http://{endpoint(pod.port)}/metrics", timeout=30).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "modelkube_requests_total" and sample.labels.get("endpoint") == "chat"
    )


def _configuration(
    args: argparse.Namespace,
    cp: ControlPlane,
    work: Path,
    gateway: str,
    cache_mb: int | None,
) -> tuple[dict[str, Any], list[float]]:
    """Both modes, each on its own freshly started replicas (see `_interleaved_waves` for
    their order); the results and the bytes each replica's cache held after the gateway's
    run."""
    budget = (cache_mb or DEFAULT_CACHE_MB) << 20
    results: dict[str, Any] = {"prefix_cache_mb_per_replica": cache_mb or DEFAULT_CACHE_MB}
    pods = {mode: _start_pods(args, work, cache_mb) for mode in MODES}
    try:
        _republish(cp, pods["gateway"])
        _wait_endpoints(gateway, pods["gateway"])
        urls = {mode: [f"http://{endpoint(p.port)}" for p in pods[mode]] for mode in MODES}
        systems = {mode: system_prompt(seed, args.system_words) for mode, seed in MODES.items()}
        _log(f"{args.sessions} sessions x {args.turns} turns a mode, {budget >> 20} MiB")
        sessions = range(args.sessions)
        turns, walls = _interleaved_waves(args, urls["direct"], gateway, systems, sessions)
        held = {mode: [_cache_bytes(p, budget) for p in pods[mode]] for mode in MODES}
        paced: tuple[dict[str, list[Turn]], dict[str, float]] | None = None
        if args.think_ms:
            _log(f"paced: the same again, {args.think_ms} ms between turns on average")
            later = range(args.sessions, 2 * args.sessions)  # new conversations
            think = reader(args.think_ms / 1000)
            paced = _interleaved_waves(args, urls["direct"], gateway, systems, later, think)
        for mode in MODES:  # the probes below add to the caches: their fill was read first
            shared = asyncio.run(shared_tokens(urls[mode], systems[mode]))
            results[mode] = summary(turns[mode], walls[mode], shared)
            cold, warm = asyncio.run(idle_ttft(urls[mode], systems[mode], args.turns))
            idle = {"idle_ttft_lost_ms": cold * 1000, "idle_ttft_found_ms": warm * 1000}
            results[mode] |= idle
            if args.engine == "mlx":  # llama.cpp's figure is a share of cells, not of MiB
                results[mode]["cache_mb_held_per_replica"] = [
                    round(b / (1 << 20), 1) for b in held[mode]
                ]
            _log(f"{mode}: {results[mode]}")
            if paced is not None:
                results.setdefault("paced", {})[mode] = (
                    summary(paced[0][mode], paced[1][mode], shared) | idle
                )
                _log(f"{mode}, paced: {results['paced'][mode]}")
        endpoints = [endpoint(p.port) for p in pods["gateway"]]
        results.update(
            added_latency(
                gateway,
                endpoints,
                work,
                args.latency_requests,
                pause_s=args.latency_pause_ms / 1000,
            ).as_dict()
        )
    finally:
        for pod in pods["direct"] + pods["gateway"]:
            pod.stop()
    return results, held["gateway"]


def _interleaved_waves(
    args: argparse.Namespace,
    direct: list[str],
    gateway: str,
    systems: dict[str, str],
    sessions: range,
    think: Think = no_think,
) -> tuple[dict[str, list[Turn]], dict[str, float]]:
    """The sessions in waves of `--wave`, each wave run by one mode and then by the other
    (which goes first alternates), so that both modes see the same load from the rest of the
    machine; the turns and the summed wall time of each mode. One wave (the default) is the
    steady workload: `--concurrency` sessions running at every moment, one mode after the
    other. Small waves interleave the modes but start each wave's sessions together."""
    rng = random.Random(0)
    picks: dict[str, Callable[[], str]] = {
        "direct": partial(rng.choice, direct),
        "gateway": lambda: gateway,
    }
    turns: dict[str, list[Turn]] = {mode: [] for mode in MODES}
    walls = dict.fromkeys(MODES, 0.0)
    size = args.wave or len(sessions)
    for wave, first in enumerate(range(sessions.start, sessions.stop, size)):
        numbers = range(first, min(first + size, sessions.stop))
        for mode in list(MODES)[:: 1 if wave % 2 == 0 else -1]:
            done, wall = asyncio.run(run_sessions(
                picks[mode], systems[mode], numbers, args.turns, args.concurrency,
                args.max_tokens, think,
            ))  # fmt: skip
            turns[mode] += done
            walls[mode] += wall
    return turns, walls


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    _log(f"work dir {work}; endpoints on {host_address()}")
    cp = ControlPlane(work / "cp").start(crds=REPO / "crds")
    gateway_proc = None
    pods: list[RuntimeProcess] = []
    try:
        pods = _start_pods(args, work)
        _publish(cp, pods)
        # --latency-only times the gateway on uvicorn and, beside it, on the native front.
        front = "uvicorn" if args.latency_only else args.front
        gateway_proc, gateway = _start_gateway(cp, work, load_bound=args.load_bound, front=front)
        _wait_models(gateway)
        if args.latency_only:
            front_proc, fronted = _start_gateway(
                cp, work, load_bound=args.load_bound, front="native"
            )
            try:
                _wait_models(fronted)
                return _latency_only(args, work, gateway, fronted, pods)
            finally:
                front_proc.terminate()
                front_proc.wait(30)
        for pod in pods:
            pod.stop()
        unbounded, held = _configuration(args, cp, work, gateway, None)
        configurations = {"Unbounded": unbounded}
        print(LEGEND + "\n")
        print(table(_unbounded_title(args), unbounded["direct"], unbounded["gateway"]))
        print(latency_line(AddedLatency.of(unbounded)) + "\n")
        # llama.cpp's figure is a share of its KV cells, not MiB; its cells bound its cache.
        total_mb = sum(held) / (1 << 20) if args.engine == "mlx" else None
        if total_mb is not None:
            cache_mb = max(1, math.ceil(args.budget_factor * total_mb / args.replicas))
            _log(f"the sessions' caches took {total_mb:.1f} MiB in all; bounded: {cache_mb} MiB")
            bounded, _ = _configuration(args, cp, work, gateway, cache_mb)
            configurations["Bounded"] = bounded
            print(table(
                f"Bounded prefix caches ({cache_mb} MiB per replica: the {args.replicas} replicas "
                f"hold {args.budget_factor:g}x the {total_mb:.1f} MiB all sessions' caches took, "
                f"one replica {cache_mb / total_mb:.0%} of it):",
                bounded["direct"], bounded["gateway"]))  # fmt: skip
            print(latency_line(AddedLatency.of(bounded)))
        for name, results in configurations.items():
            if "paced" in results:
                print("\n" + table(
                    f"{name} prefix caches, paced: each later turn sent after a pause of "
                    f"{args.think_ms} ms on average (a user reading and typing), on the same "
                    "replicas, new sessions:", results["paced"]["direct"],
                    results["paced"]["gateway"]))  # fmt: skip
        args.output.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "sessions_cache_mb_total": total_mb,
            **{name.lower(): results for name, results in configurations.items()},
        }
        args.output.write_text(json.dumps(payload, indent=2) + "\n")
        _log(f"results written to {args.output}")
    finally:
        for pod in pods:
            pod.stop()
        if gateway_proc is not None:
            gateway_proc.terminate()
            gateway_proc.wait(30)
        cp.stop()
    return 0


def _unbounded_title(args: argparse.Namespace) -> str:
    where = f"{args.model} on {args.engine}, {args.replicas} replicas"
    if args.engine == "llamacpp":
        return f"{where}; each replica's KV cells hold its prefix cache:"
    return f"{where}; unbounded prefix caches ({DEFAULT_CACHE_MB} MiB per replica):"


def _latency_only(
    args: argparse.Namespace,
    work: Path,
    gateway: str,
    fronted: str,
    pods: list[RuntimeProcess],
) -> int:
    endpoints = [endpoint(p.port) for p in pods]
    latency = added_latency(
        gateway, endpoints, work, args.latency_requests, fronted, args.latency_pause_ms / 1000
    )
    print(latency_line(latency))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {"args": {k: str(v) for k, v in vars(args).items()}, **latency.as_dict()}
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    _log(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
