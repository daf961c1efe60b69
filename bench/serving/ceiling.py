"""Runs ceiling_worker in a subprocess with the OpenBLAS preload and reads its JSON line."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.serving.config import ModelPlan
from bench.serving.servers import blas_env

CEILING_TIMEOUT_S = 1800.0
REPO_ROOT = Path(__file__).resolve().parents[2]


def run_ceiling(plan: ModelPlan, path: Path, max_tokens: int) -> dict[str, Any]:
    """{"blas", "levels": [...]} on success, {"error": ...} otherwise; never raises."""
    spec = {
        "path": str(path),
        "max_tokens": max_tokens,
        "levels": [[level.concurrency, level.requests] for level in plan.levels],
    }
    command = [sys.executable, "-m", "bench.serving.ceiling_worker", json.dumps(spec)]
    try:
        done = subprocess.run(
            command,
            env=blas_env(),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=CEILING_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"ceiling worker ran past {CEILING_TIMEOUT_S:.0f}s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": f"ceiling worker exit {done.returncode}: {done.stderr[-500:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result
