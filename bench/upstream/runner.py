"""Starts what the plan needs around one local upstream, measures, and always stops it all."""

import contextlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.upstream.config import Pinning, Plan
from bench.upstream.litellm_proxy import ensure_venv, litellm, litellm_version
from bench.upstream.processes import Endpoint, ours, pinned, proxy_available, upstream
from bench.upstream.proxies import MODES, check, log, measure, summarize

SYSTEMS = ("direct", "modelkube", "litellm proxy")


def _start_proxies(
    stack: contextlib.ExitStack, plan: Plan, pin: Pinning, up: Endpoint, workdir: Path
) -> tuple[list[Endpoint], dict[str, Any]]:
    """The endpoints to measure, and why any proxy is not among them."""
    endpoints = [Endpoint("direct", up.base_url, up.pid)]
    missing: dict[str, Any] = {}
    why_not = proxy_available()
    if why_not is not None:
        missing["modelkube"] = {"skipped": why_not}
    else:
        try:
            endpoints.append(stack.enter_context(ours(up.base_url, pin.system)))
        except RuntimeError as error:
            missing["modelkube"] = {"error": f"did not start: {error}"}
    if not plan.litellm:
        missing["litellm proxy"] = {"skipped": "--no-litellm"}
        return endpoints, missing
    try:
        venv = ensure_venv(litellm_version())
        log(f"LiteLLM proxy from {venv}")
        endpoints.append(stack.enter_context(litellm(venv, workdir, up.base_url, pin.system)))
    except (RuntimeError, subprocess.CalledProcessError) as error:
        missing["litellm proxy"] = {"error": f"did not start: {error}"}
    return endpoints, missing


def _checked(endpoints: list[Endpoint], missing: dict[str, Any]) -> list[Endpoint]:
    """Only the systems that answer both modes correctly are measured."""
    good = []
    for endpoint in endpoints:
        try:
            for mode in MODES:
                check(endpoint, mode)
            good.append(endpoint)
        except (RuntimeError, ValueError, LookupError, TypeError, httpx.HTTPError) as error:
            missing[endpoint.system] = {"error": f"wrong answer: {error}"}
    return good


def run_proxies(plan: Plan, pin: Pinning, up: Endpoint) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-upstream-")))
        endpoints, missing = _start_proxies(stack, plan, pin, up, workdir)
        endpoints = _checked(endpoints, missing)
        log(f"measuring {', '.join(e.system for e in endpoints)}")
        raw = measure(endpoints, plan, pin)
    systems = {
        name: {"modes": {mode: summarize(rounds) for mode, rounds in modes.items()}, "raw": modes}
        for name, modes in raw.items()
    }
    systems.update(missing)
    return {name: systems[name] for name in SYSTEMS if name in systems}


def run_clients(plan: Plan, pin: Pinning, up: Endpoint) -> dict[str, Any]:
    """In a process of its own on the system CPU, like the proxies had."""
    command = [
        sys.executable, "-m", "bench.upstream.clients", "--base-url", up.base_url,
        "--seconds", str(plan.client_s), "--rounds", str(plan.rounds),
        "--concurrency", str(plan.client_concurrency),
    ]  # fmt: skip
    done = subprocess.run(pinned(command, pin.system), capture_output=True, text=True, timeout=600)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": f"exit {done.returncode}: {done.stderr[-2000:]}", "modes": {}}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run(plan: Plan, pin: Pinning) -> dict[str, Any]:
    with upstream(pin.loadgen, plan.chunks) as up:
        log(f"local upstream at {up.base_url}")
        proxies = run_proxies(plan, pin, up)
        clients = run_clients(plan, pin, up) if plan.clients else {"skipped": "--no-clients"}
    return {"proxies": proxies, "clients": clients}
