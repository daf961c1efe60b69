"""A real `modelkube serve` process for tests: started, waited for, stopped."""

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.waiting import wait_http_ok


def _port_range() -> range:
    """Below the kernel's ephemeral range (see shared notes); under pytest-xdist each worker
    (PYTEST_XDIST_WORKER=gwN) gets its own slice, so two workers never race for one port
    between the check here and the bind of the process they start."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return range(21000, 29000)
    start = 21000 + int(worker[2:]) % 8 * 1000
    return range(start, start + 1000)


_PORT_RANGE = _port_range()
_next_port = _PORT_RANGE.start + (os.getpid() * 37) % (len(_PORT_RANGE) // 2)


def free_port() -> int:
    global _next_port
    for _ in range(len(_PORT_RANGE)):
        port, _next_port = _next_port, _next_port + 1
        if _next_port >= _PORT_RANGE.stop:
            _next_port = _PORT_RANGE.start
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@dataclass
class RuntimeProcess:
    args: list[str]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)  # added to this process's environment

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True, timeout: float = 120.0) -> "RuntimeProcess":
        cmd = [
            sys.executable,
            "-m",
            "modelkube_serving",
            "serve",
            "--port",
            str(self.port),
            *self.args,
        ]
        with self.log_path.open("ab") as log:
            env = {**os.environ, **self.env}
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        wait_http_ok(f"{self.url}/readyz", self._stopped, self.log, timeout)

    def _stopped(self) -> str | None:
        assert self.proc is not None
        code = self.proc.poll()
        return None if code is None else f"runtime exited with {code}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
