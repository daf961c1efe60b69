"""Start and stop the HTTP servers under test: ours (float32, or a GGUF model's weights kept
quantized), mlx_lm.server (the same OpenBLAS environment) and llama.cpp's llama-server."""

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

from bench.serving.llamacpp import ensure_llama_server, server_env
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
        if self.system == "llama-server":
            return "none (ggml's own kernels)"
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


# `--dtype` of each of our systems; the real model's GGUF weights are Q4_1.
OUR_DTYPES = {"ours": "float32", "ours-keep": "keep", "ours-llamacpp": "float32"}
# `--engine` of each of ours: llama.cpp in the Rust core serves the GGUF file as it is.
OUR_ENGINES = {"ours": "mlx", "ours-keep": "mlx", "ours-llamacpp": "llamacpp"}
LLAMA_CONTEXT_PER_SLOT = 2048  # a ~1,000-token prefill plus its answer fits one slot


def _command(
    system: str, model: str, path: Path, port: int, parallel: int, extra: tuple[str, ...] = ()
) -> list[str]:
    bindir = Path(sys.executable).parent
    if system in OUR_DTYPES:
        return [
            str(bindir / "modelkube"), "serve", "--model", f"builtin://{model}",
            "--dtype", OUR_DTYPES[system], "--engine", OUR_ENGINES[system],
            "--host", HOST, "--port", str(port),
            "--max-concurrent-requests", "64", "--max-queued-requests", "1024", *extra,
        ]  # fmt: skip
    if system == "llama-server":
        # `path` is the GGUF file; continuous batching over `parallel` slots, one thread per
        # core, the file's own chat template (--jinja), as the runtime uses it.
        return [
            str(ensure_llama_server()), "--model", str(path), "--host", HOST, "--port", str(port),
            "--parallel", str(parallel), "--cont-batching", "--jinja",
            "--ctx-size", str(parallel * LLAMA_CONTEXT_PER_SLOT),
            "--threads", os.environ.get("BENCH_OPENBLAS_THREADS", "2"), "--no-webui",
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


def _env(system: str) -> dict[str, str]:
    if system == "llama-server":
        return server_env(ensure_llama_server())
    return blas_env()


@contextlib.contextmanager
def running_server(
    system: str,
    model: str,
    path: Path,
    env: dict[str, str] | None = None,
    label: str = "",
    parallel: int = 16,
    extra: tuple[str, ...] = (),
) -> Iterator[Server]:
    """`system` is "ours", "ours-keep", "mlx_lm.server" (`path`: the mlx-lm directory) or
    "llama-server" (`path`: the GGUF file, `parallel` slots); the process is always stopped on
    exit. `env` adds to the environment (e.g. a PYTHONPATH with another checkout's runtime);
    `label` tells its log apart; `extra` adds `modelkube serve` flags to ours."""
    port = free_port()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{label or system}-{model}.log"
    ready = "/readyz" if system in OUR_DTYPES else "/health"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            _command(system, model, path, port, parallel, extra),
            env={**_env(system), **(env or {})},
            stdout=sink,
            stderr=sink,
        )
        try:
            _wait_ready(proc, f"http://{HOST}:{port}{ready}", log)
            name = str(path) if system == "mlx_lm.server" else model
            yield Server(system, f"http://{HOST}:{port}", name, proc.pid)
        finally:
            stop_process(proc)
