"""A real runtime inside the test process: the same app, engine and uvicorn server as
`modelkube serve`, on a thread, on a loopback port.

It costs a model load (a fraction of a second on builtin://tiny) instead of a new interpreter
importing MLX, FastAPI and DSPy. Tests that need a process of their own (signals, the BLAS
preload, the CLI's exit codes) use `RuntimeProcess`.
"""

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from modelkube_serving.app import create_app
from modelkube_serving.cli import parse_serve_args, serve_config
from modelkube_serving.server import DrainingServer
from modelkube_serving.state import ServingState
from tests.serving.runtime_process import free_port
from tests.waiting import wait_http_ok

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class InProcessRuntime:
    args: list[str]
    log_path: Path
    port: int = field(default_factory=free_port)
    server: DrainingServer | None = None
    thread: threading.Thread | None = None
    fatal: list[str] = field(default_factory=list)
    _handler: logging.Handler | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state(self) -> ServingState:
        assert self.server is not None and self.server.runtime is not None
        return self.server.runtime

    def start(self, wait_ready: bool = True, timeout: float = 60.0) -> "InProcessRuntime":
        self._handler = logging.FileHandler(self.log_path)
        self._handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        logging.getLogger().addHandler(self._handler)
        logging.getLogger().setLevel(logging.INFO)
        args = parse_serve_args(["--port", str(self.port), *self.args])
        config = uvicorn.Config(
            "unused:app",
            host=args.host,
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=5,
            access_log=False,
        )
        self.server = DrainingServer(config, args.drain_grace_period)
        app = create_app(serve_config(args), on_fatal=self._fail)
        self.server.config.app = app
        self.server.runtime = app.state.runtime
        self.thread = threading.Thread(target=self.server.run, name=f"runtime-{self.port}")
        self.thread.start()
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def _fail(self, message: str) -> None:
        self.fatal.append(message)
        assert self.server is not None
        self.server.fail(message)

    def wait_ready(self, timeout: float) -> None:
        wait_http_ok(f"{self.url}/readyz", self._stopped, self.log, timeout)

    def _stopped(self) -> str | None:
        if self.fatal or (self.thread is not None and not self.thread.is_alive()):
            return f"runtime stopped: {self.fatal}"
        return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:]

    def stop(self) -> int:
        if self.server is not None and self.thread is not None and self.thread.is_alive():
            self.server.should_exit = True
            self.thread.join(60)
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        return self.server.exit_code if self.server is not None else 0


@asynccontextmanager
async def serving_app(*extra: str) -> AsyncIterator[FastAPI]:
    """The runtime's ASGI app on builtin://tiny, its lifespan run on the caller's event loop, for
    tests that drive ASGI messages themselves (what a socket cannot time)."""
    args = parse_serve_args(["--model", "builtin://tiny", *extra])
    app = create_app(serve_config(args))
    async with app.router.lifespan_context(app):
        state = app.state.runtime
        while state.loading():  # noqa: ASYNC110 - a flag the engine thread sets
            await asyncio.sleep(0.02)
        yield app
