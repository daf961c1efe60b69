"""Iterations per second: `modelkube finetune` against the `mlx_lm.lora` CLI.

Both run as fresh processes on the same model, data split, hyperparameters and OpenBLAS.
Each runs a short and a long run; the per-iteration time is the difference over the extra
iterations, so process start, model load and the final save cancel out and only the training
loop counts.
"""

import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.serving.servers import blas_env
from modelkube_serving.finetune.dataset import read_dataset
from modelkube_serving.models.builtin import ensure_builtin

DATA = Path("tests/finetune/data/chat.jsonl")
COMMON = {"batch-size": "4", "learning-rate": "1e-4", "seed": "0", "num-layers": "4"}


def _split(into: Path) -> Path:
    """One train/valid split on disk, read by both tools. mlx_lm.lora needs a batch's worth
    of validation examples, more than our default tenth of this small set."""
    records = list(read_dataset(DATA)[0].records)
    random.Random(0).shuffle(records)
    held = int(COMMON["batch-size"])
    into.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", records[held:]), ("valid", records[:held])):
        (into / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in part) + "\n")
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


def run(
    model: str = "tiny", short: int = 20, long: int = 220, rounds: int = 3
) -> list[dict[str, Any]]:
    """Per round, each tool (in alternating order) runs `short` and `long` iterations; its
    seconds per iteration are the difference over `long - short`. Medians over rounds."""
    data = _split(Path(tempfile.mkdtemp(prefix="bench-ft-data-")))
    times: dict[str, list[float]] = {"ours": [], "mlx_lm.lora": []}
    for i in range(rounds):
        order = ["ours", "mlx_lm.lora"] if i % 2 == 0 else ["mlx_lm.lora", "ours"]
        for tool in order:
            elapsed_short = _timed(tool, model, data, short)
            elapsed_long = _timed(tool, model, data, long)
            times[tool].append((elapsed_long - elapsed_short) / (long - short))
    ratios = sorted(p / o for o, p in zip(times["ours"], times["mlx_lm.lora"], strict=True))
    rows: list[dict[str, Any]] = []
    for tool, per_iteration in times.items():
        median = sorted(per_iteration)[len(per_iteration) // 2]
        rows.append(
            {
                "tool": tool,
                "model": model,
                "s_per_iteration": median,
                "it_per_s": 1 / median,
                "rounds_s_per_iteration": per_iteration,
                # Paired within a round (same machine state), then the median.
                "ours_vs_this": 1.0 if tool == "ours" else ratios[len(ratios) // 2],
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["tool         | model | it/s  | ms/it | ours vs this"]
    for r in rows:
        lines.append(
            f"{r['tool']:<12} | {r['model']:<5} | {r['it_per_s']:5.2f} | "
            f"{1000 * r['s_per_iteration']:5.0f} | {r['ours_vs_this']:.2f}x"
        )
    return "\n".join(lines)
