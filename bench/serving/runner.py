"""Runs every model in the plan. The HTTP servers and the ceiling worker stay up for the
whole model; each level is measured in interleaved rounds, the order rotated every round
so that drift on the machine falls on every system alike."""

import asyncio
import contextlib
import dataclasses
import os
import subprocess
from pathlib import Path
from typing import Any, TypeVar

from bench.serving.ceiling import running_ceiling
from bench.serving.client import make_client, stream_chat
from bench.serving.config import REQUEST_TIMEOUT_S, Level, ModelPlan, Plan, is_real
from bench.serving.multiturn import multi_turn
from bench.serving.prompts import chat_body
from bench.serving.report import fmt
from bench.serving.servers import Server, running_server
from bench.serving.systems import CeilingSystem, HttpSystem, System
from bench.serving.twoturn import two_turn
from modelkube_serving.models.builtin import ensure_builtin
from modelkube_serving.models.packaged import packaged_gguf
from modelkube_serving.models.uri import resolve_model

# The random-weight models: ours, mlx_lm.server and mlx-lm's batch_generate (the ceiling).
HTTP_SYSTEMS = ("ours", "mlx_lm.server")
# A real model from a GGUF file: ours on dequantized float32 and on the weights kept as
# loaded (Q4_1), mlx_lm.server on the same float32 directory, llama-server on the file.
REAL_HTTP_SYSTEMS = ("ours", "ours-keep", "ours-llamacpp", "mlx_lm.server", "llama-server")
ALL_SYSTEMS = (*REAL_HTTP_SYSTEMS, "ceiling")
T = TypeVar("T")


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def load_average() -> str:
    """The machine is shared: what else ran shows in the 1/5/15-minute load averages."""
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def model_paths(name: str) -> dict[str, Path]:
    """What each system loads: the mlx-lm directory, or the GGUF file for llama-server."""
    if not is_real(name):
        path = ensure_builtin(name)
        return {system: path for system in (*HTTP_SYSTEMS, "ceiling")}
    float32 = resolve_model(f"builtin://{name}", progress=log, dtype="float32")
    resolve_model(f"builtin://{name}", progress=log, dtype="keep")  # converted before timing
    gguf = packaged_gguf(name)
    return {
        "ours": float32,
        "ours-keep": float32,
        "ours-llamacpp": float32,  # its source.json names the GGUF file llama.cpp loads
        "mlx_lm.server": float32,
        "llama-server": gguf,
    }


def round_order(items: list[T], index: int) -> list[T]:
    """Round `index` starts with the item at `index` (mod len) and wraps around."""
    start = index % len(items) if items else 0
    return items[start:] + items[:start]


async def _warm_up(server: Server, max_tokens: int, concurrency: int) -> dict[str, Any]:
    """One request alone, then one burst at the run's highest concurrency, none of them timed
    in the results, so no server meets that many sequences for the first time in a timed round.
    The burst's TTFTs are kept, so what each server's first burst costs is still reported.
    (A level's first round stays its slowest: its prompts find fewer tokens cached.)"""

    def body(i: int) -> dict[str, Any]:
        messages = [{"role": "user", "content": f"Warm-up request {i}, please ignore."}]
        return chat_body(server.model, messages, max_tokens)

    async with make_client(server.base_url, concurrency, REQUEST_TIMEOUT_S) as client:
        alone = await stream_chat(client, body(0), REQUEST_TIMEOUT_S)
        burst = await asyncio.gather(
            *(stream_chat(client, body(i + 1), REQUEST_TIMEOUT_S) for i in range(concurrency))
        )
    results = [alone, *burst]
    errors = [r.error for r in results if r.error]
    return {
        "ok": not errors,
        "error": errors[0] if errors else None,
        "burst_ttft_ms": sorted(round(r.ttft_s * 1000, 1) for r in burst if r.ttft_s is not None),
    }


async def _measure_level(
    systems: list[System], model: str, level: Level, first: int, settle_s: float
) -> None:
    for index in range(level.rounds):
        measured = []
        for system in round_order(systems, index):
            await asyncio.sleep(settle_s)
            tok_per_s = await system.measure(level, first + index * level.requests)
            measured.append(f"{system.name} {fmt(tok_per_s)}")
        done = ", ".join(measured)
        log(f"{model} @{level.concurrency} round {index + 1}/{level.rounds} tok/s: {done}")


async def _measure(systems: list[System], plan: ModelPlan, settle_s: float) -> None:
    """Every request of the model gets its own prompt index, shared by all systems in a round."""
    first = 0
    for level in plan.levels:
        log(
            f"{plan.name} @{level.concurrency}: {level.rounds} rounds of {level.requests} "
            f"requests, {settle_s:g} s of quiet before each system's round"
        )
        await _measure_level(systems, plan.name, level, first, settle_s)
        first += level.rounds * level.requests


async def _http_systems(
    servers: list[Server], max_tokens: int, concurrency: int
) -> list[HttpSystem]:
    systems = []
    for server in servers:
        system = HttpSystem(server, max_tokens)
        system.info["warm_up"] = await _warm_up(server, max_tokens, concurrency)
        systems.append(system)
    return systems


async def _start_ceiling(
    stack: contextlib.AsyncExitStack, model: str, path: Path, max_tokens: int
) -> tuple[list[System], dict[str, Any]]:
    """[the ceiling] if it came up (stopped when `stack` closes), else its error entry."""
    log(f"starting the ceiling worker on {model}")
    try:
        worker = await stack.enter_async_context(running_ceiling(model, path))
    except RuntimeError as exc:
        log(f"ceiling on {model} failed: {exc}")
        return [], {"ceiling": {"error": str(exc), "levels": []}}
    return [CeilingSystem(worker, max_tokens)], {}


async def _two_turn(systems: list[HttpSystem], model: str, path: Path, trials: int) -> None:
    for system in systems:
        log(f"{system.name} {model}: two-turn chat (~1,000-token prefill), load {load_average()}")
        result = await two_turn(system.server, path, trials)
        system.info["two_turn"] = dataclasses.asdict(result)


async def _multi_turn(systems: list[HttpSystem], model: str, path: Path) -> None:
    for system in systems:
        log(f"{system.name} {model}: multi-turn sessions (shared system prompt)")
        result = await multi_turn(system.server, path)
        system.info["multi_turn"] = dataclasses.asdict(result)


async def _bench_model(
    servers: list[Server], plan: ModelPlan, full: Plan, path: Path
) -> dict[str, Any]:
    """{"round_orders", "systems"} for the servers given and the ceiling, if it comes up (not
    for a real model: its peers are llama-server and mlx_lm.server)."""
    concurrency = max((level.concurrency for level in plan.levels), default=1)
    http = await _http_systems(servers, full.max_tokens, concurrency)
    async with contextlib.AsyncExitStack() as stack:
        ceiling: list[System] = []
        results: dict[str, Any] = {}
        if not is_real(plan.name):
            ceiling, results = await _start_ceiling(stack, plan.name, path, full.max_tokens)
        systems: list[System] = [*http, *ceiling]
        await _measure(systems, plan, full.settle_s)
    if full.two_turn and (plan.name == "tiny" or is_real(plan.name)):
        # On the CPU a quantized ~1,000-token prefill takes minutes: not in a quick run.
        chats = [s for s in http if not (full.quick and s.name == "ours-keep")]
        await _two_turn(chats, plan.name, path, full.prefill_trials)
        if is_real(plan.name):
            await _multi_turn(chats, plan.name, path)
    rounds = max((level.rounds for level in plan.levels), default=0)
    orders = [[system.name for system in round_order(systems, i)] for i in range(rounds)]
    results |= {system.name: system.result() for system in systems}
    return {"round_orders": orders, "systems": results}


def _start_servers(
    stack: contextlib.ExitStack, model: str, paths: dict[str, Path], full: Plan, parallel: int
) -> tuple[list[Server], dict[str, Any]]:
    """The servers that came up (stopped when `stack` closes), and errors of those that didn't."""
    servers, failed = [], {}
    for system in REAL_HTTP_SYSTEMS if is_real(model) else HTTP_SYSTEMS:
        if full.systems and system not in full.systems:
            continue
        log(f"starting {system} on {model}")
        try:
            server = running_server(system, model, paths[system], parallel=parallel)
            servers.append(stack.enter_context(server))
        except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
            log(f"{system} on {model} failed: {exc}")
            failed[system] = {"error": str(exc), "levels": []}
    return servers, failed


def run_model(plan: ModelPlan, full: Plan) -> dict[str, Any]:
    paths = model_paths(plan.name)
    path = paths["ours"]
    parallel = max((level.concurrency for level in plan.levels), default=1)
    load_before = load_average()
    log(f"{plan.name}: load average {load_before} before")
    with contextlib.ExitStack() as stack:
        servers, failed = _start_servers(stack, plan.name, paths, full, parallel)
        measured = asyncio.run(_bench_model(servers, plan, full, path))
    systems = failed | measured["systems"]
    ordered = {name: systems[name] for name in ALL_SYSTEMS if name in systems}
    loads = {"before": load_before, "after": load_average()}
    log(f"{plan.name}: load average {loads['after']} after")
    return {"model": plan.name, "path": str(path), "load_average": loads, **measured,
            "systems": ordered}  # fmt: skip


def run_plan(plan: Plan) -> list[dict[str, Any]]:
    return [run_model(model, plan) for model in plan.models]
