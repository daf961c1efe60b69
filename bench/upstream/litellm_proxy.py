"""The LiteLLM proxy, in its own virtualenv so it cannot disturb the project's lock.

The venv lives at ~/.cache/modelkube/bench/litellm-<version>, the version being the litellm
the project's own environment has (pyproject pins litellm>=1.83,<1.84), and is built once:
a `.ready` file listing what was installed marks a finished install, so a re-run reuses it
and an interrupted or outdated one starts over.

It runs as fast as its docs allow and as fair as ours: one uvicorn worker (uvloop and
httptools), no database (so no spend or error logs), no master key (ours has no API keys
either), verbose and access logs off, the model cost map read from the package instead of
the network.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import yaml

from bench.serving.servers import HOST, free_port
from bench.upstream.processes import (
    SERVED_MODEL,
    UPSTREAM_MODEL,
    Endpoint,
    pinned,
    quiet_env,
    running,
)

CACHE = Path.home() / ".cache" / "modelkube" / "bench"
# uvicorn skips its access log entirely when the logger is above INFO.
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {name: {"level": "WARNING"} for name in ("uvicorn", "uvicorn.access")},
}


def litellm_version() -> str:
    return version("litellm")


def _uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        raise RuntimeError("uv is needed to build the LiteLLM proxy's venv (run through `uv run`)")
    return found


def _base_python() -> str:
    """The machine's python3, not the project venv's (uv may not download one here)."""
    base: str = getattr(sys, "_base_executable", sys.executable)
    return os.environ.get("UV_PYTHON") or base


def requirements(pinned_version: str) -> list[str]:
    """litellm's proxy extra, plus httptools at the project's version: without it uvicorn
    falls back to its pure-Python h11 parser, and our runtime has httptools."""
    return [f"litellm[proxy]=={pinned_version}", f"httptools=={version('httptools')}"]


def ensure_venv(pinned_version: str) -> Path:
    venv = CACHE / f"litellm-{pinned_version}"
    wanted = "\n".join(requirements(pinned_version)) + "\n"
    ready = venv / ".ready"
    if ready.exists() and ready.read_text() == wanted:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    uv = _uv()
    subprocess.run([uv, "venv", "-q", "--python", _base_python(), str(venv)], env=env, check=True)
    python = str(venv / "bin" / "python")
    install = [uv, "pip", "install", "-q", "--python", python, *requirements(pinned_version)]
    subprocess.run(install, env=env, check=True)
    ready.write_text(wanted)
    return venv


def write_config(directory: Path, upstream_url: str) -> tuple[Path, Path]:
    config = {
        "model_list": [{
            "model_name": SERVED_MODEL,
            "litellm_params": {"model": f"openai/{UPSTREAM_MODEL}", "api_base": upstream_url,
                               "api_key": "sk-bench-upstream"},
        }],
        "litellm_settings": {"set_verbose": False, "json_logs": False, "drop_params": True,
                             "turn_off_message_logging": True, "request_timeout": 60},
        "general_settings": {"disable_spend_logs": True, "disable_error_logs": True},
    }  # fmt: skip
    config_path = directory / "litellm.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = directory / "litellm-log.json"
    log_path.write_text(json.dumps(LOG_CONFIG))
    return config_path, log_path


@contextlib.contextmanager
def litellm(venv: Path, directory: Path, upstream_url: str, cpus: str | None) -> Iterator[Endpoint]:
    port = free_port()
    config, log_config = write_config(directory, upstream_url)
    command = [
        str(venv / "bin" / "litellm"), "--config", str(config), "--host", HOST,
        "--port", str(port), "--num_workers", "1", "--log_config", str(log_config),
        "--telemetry", "False",
    ]  # fmt: skip
    env = quiet_env(
        LITELLM_LOG="ERROR", LITELLM_MODE="PRODUCTION", LITELLM_LOCAL_MODEL_COST_MAP="True"
    )
    for name in ("DATABASE_URL", "LITELLM_MASTER_KEY", "REDIS_HOST", "VIRTUAL_ENV"):
        env.pop(name, None)
    with running("litellm proxy", pinned(command, cpus), port, "/health/liveliness", env) as end:
        yield end
