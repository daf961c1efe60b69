"""Runs every system for every model in the plan, one at a time on this machine."""

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from bench.serving.ceiling import run_ceiling
from bench.serving.client import make_client, run_load, stream_chat
from bench.serving.config import REQUEST_TIMEOUT_S, ModelPlan, Plan
from bench.serving.prompts import chat_body
from bench.serving.servers import Server, running_server
from bench.serving.stats import summarise
from bench.serving.twoturn import two_turn
from modelkube_serving.models.builtin import ensure_builtin

HTTP_SYSTEMS = ("ours", "mlx_lm.server")


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


async def _warm_up(server: Server, max_tokens: int) -> dict[str, Any]:
    messages = [{"role": "user", "content": "Warm-up request, please ignore."}]
    async with make_client(server.base_url, 1, REQUEST_TIMEOUT_S) as client:
        result = await stream_chat(
            client, chat_body(server.model, messages, max_tokens), REQUEST_TIMEOUT_S
        )
    return {"ok": result.ok, "error": result.error}


async def _bench_server(
    server: Server, plan: ModelPlan, max_tokens: int, two_turn_too: bool, path: Path
) -> dict[str, Any]:
    out: dict[str, Any] = {"blas": server.blas(), "warm_up": await _warm_up(server, max_tokens)}
    levels = []
    for level in plan.levels:
        log(f"{server.system} {plan.name}: {level.concurrency} clients, {level.requests} requests")
        run = await run_load(
            server.base_url, server.model, level.concurrency, level.requests,
            max_tokens, REQUEST_TIMEOUT_S,
        )  # fmt: skip
        levels.append(dataclasses.asdict(summarise(run, max_tokens)))
    out["levels"] = levels
    if two_turn_too:
        log(f"{server.system} {plan.name}: two-turn chat")
        out["two_turn"] = dataclasses.asdict(await two_turn(server, path))
    return out


def _run_system(system: str, plan: ModelPlan, path: Path, full: Plan) -> dict[str, Any]:
    log(f"starting {system} on {plan.name}")
    try:
        with running_server(system, plan.name, path) as server:
            with_two_turn = full.two_turn and plan.name == "tiny"
            return asyncio.run(_bench_server(server, plan, full.max_tokens, with_two_turn, path))
    except RuntimeError as exc:
        log(f"{system} on {plan.name} failed: {exc}")
        return {"error": str(exc), "levels": []}


def run_model(plan: ModelPlan, full: Plan) -> dict[str, Any]:
    path = ensure_builtin(plan.name)
    systems = {system: _run_system(system, plan, path, full) for system in HTTP_SYSTEMS}
    log(f"in-process ceiling on {plan.name}")
    systems["ceiling"] = run_ceiling(plan, path, full.max_tokens)
    return {"model": plan.name, "path": str(path), "systems": systems}


def run_plan(plan: Plan) -> list[dict[str, Any]]:
    return [run_model(model, plan) for model in plan.models]
