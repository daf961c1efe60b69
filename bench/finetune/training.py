"""Iterations per second: `modelkube finetune` against the `mlx_lm.lora` CLI.

Both run as fresh processes on the same model, data split, hyperparameters and OpenBLAS.
Each runs for N and for 2N iterations; the per-iteration time is the difference over N, so
process start, model load and the final save cancel out and only the training loop counts.
"""

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.serving.servers import blas_env
from modelkube_serving.finetune.dataset import read_dataset, split_validation
from modelkube_serving.models.builtin import ensure_builtin

DATA = Path("tests/finetune/data/chat.jsonl")
COMMON = {"batch-size": "4", "learning-rate": "1e-4", "seed": "0", "num-layers": "4"}


def _split(into: Path) -> Path:
    """One train/valid split on disk, read by both tools."""
    train, valid = split_validation(read_dataset(DATA)[0], seed=0)
    into.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("valid", valid)):
        lines = [json.dumps(r) for r in part.records]
        (into / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return into


def _command(tool: str, model: str, data: Path, out: Path, iterations: int) -> list[str]:
    # Validation once at the start and at the end, as both tools do by default.
    evals = str(iterations)
    if tool == "ours":
        return [
            sys.executable, "-m", "modelkube_serving", "finetune", "--base", f"builtin://{model}",
            "--data", str(data), "--output", str(out), "--iterations", str(iterations),
            "--steps-per-eval", evals, "--save-every", str(iterations + 1),
            "--progress", "lines", *(f"--{k}={v}" for k, v in COMMON.items()),
        ]  # fmt: skip
    return [
        sys.executable, "-m", "mlx_lm", "lora", "--train", "--model",
        str(ensure_builtin(model)), "--data", str(data), "--adapter-path", str(out),
        "--iters", str(iterations), "--steps-per-eval", evals,
        "--save-every", str(iterations + 1), *(f"--{k}={v}" for k, v in COMMON.items()),
    ]  # fmt: skip


def _timed(tool: str, model: str, data: Path, iterations: int) -> float:
    out = Path(tempfile.mkdtemp(prefix=f"bench-ft-{tool}-"))
    try:
        start = time.perf_counter()
        result = subprocess.run(
            _command(tool, model, data, out / "adapter", iterations),
            env=blas_env(),
            capture_output=True,
            text=True,
            timeout=1800,
        )
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed:\n{result.stderr[-3000:]}")
        return elapsed
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run(model: str = "tiny", iterations: int = 100, rounds: int = 2) -> list[dict[str, Any]]:
    data = _split(Path(tempfile.mkdtemp(prefix="bench-ft-data-")))
    times: dict[str, list[float]] = {"ours": [], "mlx_lm.lora": []}
    for i in range(rounds):
        order = ["ours", "mlx_lm.lora"] if i % 2 == 0 else ["mlx_lm.lora", "ours"]
        for tool in order:
            short = _timed(tool, model, data, iterations)
            long = _timed(tool, model, data, 2 * iterations)
            times[tool].append((long - short) / iterations)
    rows: list[dict[str, Any]] = []
    for tool, per_iteration in times.items():
        best = min(per_iteration)
        rows.append({"tool": tool, "model": model, "s_per_iteration": best, "it_per_s": 1 / best})
    ours = rows[0]["it_per_s"]
    for row in rows:
        row["ours_vs_this"] = ours / row["it_per_s"]
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["tool         | model | it/s  | ms/it | ours vs this"]
    for r in rows:
        lines.append(
            f"{r['tool']:<12} | {r['model']:<5} | {r['it_per_s']:5.2f} | "
            f"{1000 * r['s_per_iteration']:5.0f} | {r['ours_vs_this']:.2f}x"
        )
    return "\n".join(lines)
