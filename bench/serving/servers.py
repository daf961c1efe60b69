"""Start and stop the two HTTP servers under test, with the same OpenBLAS environment."""

import contextlib
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from modelkube_serving.engine.blas import loaded_blas

OPENBLAS = "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 300.0
LOG_DIR = Path("bench/results/logs")


@dataclass(frozen=True)
class Server:
    system: str
    base_url: str
    model: str
    pid: int

    def blas(self) -> str:
        return loaded_blas(self.pid)


def blas_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LD_PRELOAD=OPENBLAS,
        OPENBLAS_NUM_THREADS=os.environ.get("BENCH_OPENBLAS_THREADS", "2"),
        HF_HUB_OFFLINE="1",
    )
    return env


def free_port() -> int:
    """A free TCP port below 32768 (the kernel's ephemeral range starts above it)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


def _command(system: str, model: str, path: Path, port: int) -> list[str]:
    bindir = Path(sys.executable).parent
    if system == "ours":
        return [
            str(bindir / "modelkube"), "serve", "--model", f"builtin://{model}",
            "--host", HOST, "--port", str(port),
            "--max-concurrent-requests", "64", "--max-queued-requests", "1024",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "mlx_lm.server", "--model", str(path),
        "--host", HOST, "--port", str(port),
    ]  # fmt: skip


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.25)
    raise RuntimeError(f"server not ready after {READY_TIMEOUT_S:.0f}s; see {log}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextlib.contextmanager
def running_server(
    system: str, model: str, path: Path, env: dict[str, str] | None = None, label: str = ""
) -> Iterator[Server]:
    """`system` is "ours" or "mlx_lm.server"; the process is always stopped on exit. `env`
    adds to the environment (e.g. a PYTHONPATH with another checkout's runtime); `label`
    tells its log apart."""
    port = free_port()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{label or system}-{model}.log"
    ready = "/readyz" if system == "ours" else "/health"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            _command(system, model, path, port),
            env={**blas_env(), **(env or {})},
            stdout=sink,
            stderr=sink,
        )
        try:
            _wait_ready(proc, f"http://{HOST}:{port}{ready}", log)
            name = model if system == "ours" else str(path)
            yield Server(system, f"http://{HOST}:{port}", name, proc.pid)
        finally:
            stop_process(proc)
