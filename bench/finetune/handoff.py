"""From an adapter on disk to the first request it serves: hot loading against a restart.

- ours, hot: a running runtime polls its adapters file; the clock starts when the file names
  the adapter and stops when a completion with `model: "<service>:<adapter>"` returns.
- ours, restart: what a server without hot loading needs: start `modelkube serve --adapter`.
- mlx_lm.server, restart: start `mlx_lm.server --adapter-path` (it serves one adapter only).
The restarts also count process start and model load, which is what a restart costs.
"""

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.serving.servers import HOST, LOG_DIR, blas_env, free_port, stop_process
from modelkube_serving.models.builtin import ensure_builtin

PROMPT = [{"role": "user", "content": "Say the color red."}]
POLL_S = 0.02


def _first_answer(url: str, model: str, deadline_s: float = 300) -> None:
    body = {"model": model, "messages": PROMPT, "max_tokens": 8, "temperature": 0}
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
            if response.status_code == 200:
                return
        time.sleep(POLL_S)
    raise RuntimeError(f"no answer from {model} at {url} within {deadline_s:.0f}s")


def _serve(args: list[str], label: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = (LOG_DIR / f"handoff-{label}.log").open("wb")
    proc = subprocess.Popen(
        [*args, "--host", HOST, "--port", str(port)], env=blas_env(), stdout=log, stderr=log
    )
    return proc, f"http://{HOST}:{port}"


def hot(adapter: Path) -> float:
    work = Path(tempfile.mkdtemp(prefix="bench-handoff-"))
    adapters_file = work / "adapters.json"
    adapters_file.write_text('{"adapters": []}\n')
    bindir = Path(sys.executable).parent
    proc, url = _serve(
        [str(bindir / "modelkube"), "serve", "--model", "builtin://tiny",
         "--served-model-name", "svc", "--adapters-file", str(adapters_file)],
        "hot",
    )  # fmt: skip
    try:
        _first_answer(url, "svc")  # up and serving the base model
        start = time.perf_counter()
        listed = {"adapters": [{"name": "tuned", "uri": str(adapter)}]}
        staged = work / ".adapters.json"
        staged.write_text(json.dumps(listed))
        staged.replace(adapters_file)  # atomic, as the kubelet swaps a ConfigMap volume
        _first_answer(url, "svc:tuned")
        return time.perf_counter() - start
    finally:
        stop_process(proc)


def restart(system: str, adapter: Path) -> float:
    bindir = Path(sys.executable).parent
    if system == "ours":
        args = [str(bindir / "modelkube"), "serve", "--model", "builtin://tiny",
                "--served-model-name", "svc", "--adapter", f"tuned={adapter}"]  # fmt: skip
        model = "svc:tuned"
    else:
        path = str(ensure_builtin("tiny"))
        args = [sys.executable, "-m", "mlx_lm.server", "--model", path,
                "--adapter-path", str(adapter)]  # fmt: skip
        model = path
    start = time.perf_counter()
    proc, url = _serve(args, f"restart-{system}")
    try:
        _first_answer(url, model)
        return time.perf_counter() - start
    finally:
        stop_process(proc)


def run(adapter: Path, rounds: int = 3) -> list[dict[str, Any]]:
    samples: dict[str, list[float]] = {
        "ours: hot load (no restart)": [],
        "ours: restart with --adapter": [],
        "mlx_lm.server: restart with --adapter-path": [],
    }
    for _ in range(rounds):
        samples["ours: hot load (no restart)"].append(hot(adapter))
        samples["ours: restart with --adapter"].append(restart("ours", adapter))
        samples["mlx_lm.server: restart with --adapter-path"].append(
            restart("mlx_lm.server", adapter)
        )
    hot_median = sorted(samples["ours: hot load (no restart)"])[rounds // 2]
    rows = []
    for name, times in samples.items():
        median = sorted(times)[rounds // 2]
        rows.append({"path": name, "median_s": median, "vs_hot": median / hot_median})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["adapter available -> first request served with it | median (s) | x hot load"]
    for r in rows:
        lines.append(f"{r['path']:<49} | {r['median_s']:10.2f} | {r['vs_hot']:.1f}x")
    return "\n".join(lines)
