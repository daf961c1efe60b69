"""The processes under test: the local upstream, our proxy and the LiteLLM proxy.

Each starts on a free loopback port, pinned with `taskset` when a CPU set is given, logs to
bench/results/logs, and is always stopped on exit (bench.serving's `stop_process`).
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.serving.servers import HOST, LOG_DIR, free_port, stop_process

READY_TIMEOUT_S = 120.0
UPSTREAM_MODEL = "bench-upstream"
SERVED_MODEL = "proxy"
PROXY_FLAG = "--upstream-provider"


@dataclass(frozen=True)
class Endpoint:
    system: str
    base_url: str  # ends in /v1
    pid: int


def pinned(command: list[str], cpus: str | None) -> list[str]:
    return command if cpus is None else ["taskset", "-c", cpus, *command]


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.25)
    raise RuntimeError(f"not ready after {READY_TIMEOUT_S:.0f}s; see {log}")


@contextlib.contextmanager
def running(
    system: str, command: list[str], port: int, ready_path: str, env: dict[str, str]
) -> Iterator[Endpoint]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"upstream-{system.replace(' ', '-')}.log"
    with log.open("wb") as sink:
        # Its own process group, so a system not under test can be paused whole (`paused`).
        proc = subprocess.Popen(command, env=env, stdout=sink, stderr=sink, start_new_session=True)
        try:
            _wait_ready(proc, f"http://{HOST}:{port}{ready_path}", log)
            yield Endpoint(system, f"http://{HOST}:{port}/v1", proc.pid)
        finally:
            stop_process(proc)


@contextlib.contextmanager
def paused(endpoints: list[Endpoint]) -> Iterator[None]:
    """SIGSTOP these systems' process groups meanwhile: all proxies share one CPU, and a proxy
    idling (timers, background tasks) or still draining must not slow the one measured."""
    for endpoint in endpoints:
        os.killpg(endpoint.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for endpoint in endpoints:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(endpoint.pid, signal.SIGCONT)


def quiet_env(**extra: str) -> dict[str, str]:
    """No HTTP proxy for loopback traffic, whatever the machine's environment says."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    env.update(no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost", **extra)
    return env


@contextlib.contextmanager
def upstream(cpus: str | None, chunks: int) -> Iterator[Endpoint]:
    port = free_port()
    command = [sys.executable, "-m", "bench.upstream.upstream_server",
               "--host", HOST, "--port", str(port), "--chunks", str(chunks)]  # fmt: skip
    with running("upstream", pinned(command, cpus), port, "/health", quiet_env()) as endpoint:
        yield endpoint


def proxy_available() -> str | None:
    """None when `modelkube serve` has proxy mode, else why not."""
    modelkube = Path(sys.executable).parent / "modelkube"
    done = subprocess.run([str(modelkube), "serve", "--help"], capture_output=True, text=True)
    if PROXY_FLAG in done.stdout:
        return None
    return f"not available: `modelkube serve --help` has no {PROXY_FLAG} (proxy mode not built)"


@contextlib.contextmanager
def ours(upstream_url: str, cpus: str | None) -> Iterator[Endpoint]:
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "modelkube"), "serve",
        "--upstream-provider", "custom", "--upstream-base-url", upstream_url,
        "--upstream-model", UPSTREAM_MODEL, "--served-model-name", SERVED_MODEL,
        "--host", HOST, "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    with running("modelkube", pinned(command, cpus), port, "/readyz", quiet_env()) as endpoint:
        yield endpoint
