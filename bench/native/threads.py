"""Threads: the native core's calls with 1, 2, 4 and 8 threads, with the GIL (this venv's
CPython) and without it (3.14t, `.venv-ft` from tests/freethreaded/environment.py).

Both interpreters run bench.native.threads_worker in their own process, alternating for
`ROUNDS` rounds (medians), against one local upstream process (bench.upstream's fast server).
The expected shape: flat with the GIL, rising with the cores without it; a 2-core machine
allows at most 2x, less the cores the upstream and other work take.
"""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.upstream.processes import upstream
from modelkube_serving.models.builtin import ensure_builtin
from tests.freethreaded.environment import REPO, ensure_venv

ROUNDS = 3
WINDOW_S = 1.0


def _worker(python: Path, url: str, tokenizer: Path) -> dict[str, Any]:
    command = [str(python), "-m", "bench.native.threads_worker", "--upstream", url]
    command += ["--tokenizer", str(tokenizer), "--window", str(WINDOW_S)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON_GIL", "VIRTUAL_ENV")}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run() -> dict[str, Any]:
    interpreters = {"gil": Path(sys.executable), "nogil": ensure_venv()}
    tokenizer = ensure_builtin("tiny") / "tokenizer.json"
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in interpreters}
    with upstream(cpus=None, chunks=1) as endpoint:
        for _ in range(ROUNDS):
            for name, python in interpreters.items():
                runs[name].append(_worker(python, endpoint.base_url, tokenizer))
    report: dict[str, Any] = {
        name: {"python": found[0]["python"], "gil": found[0]["gil"]} for name, found in runs.items()
    }
    report["cpus"] = os.cpu_count()
    report["rows"] = []
    for workload, by_threads in runs["gil"][0]["results"].items():
        for threads in by_threads:
            cell = {
                name: statistics.median(r["results"][workload][threads] for r in runs[name])
                for name in interpreters
            }
            report["rows"].append({"workload": workload, "threads": int(threads), **cell})
    return report


def table(report: dict[str, Any]) -> str:
    lines = [
        f"with GIL: {report['gil']['python']}; without: {report['nogil']['python']} "
        f"(GIL on: {report['nogil']['gil']}); {report['cpus']} CPUs",
        "workload                    | thr | GIL ops/s | no-GIL ops/s | no-GIL/GIL "
        "| GIL vs 1 thr | no-GIL vs 1 thr",
        "----------------------------+-----+-----------+--------------+-----------"
        "-+--------------+----------------",
    ]
    single: dict[str, dict[str, float]] = {}
    for row in report["rows"]:
        base = single.setdefault(row["workload"], {"gil": row["gil"], "nogil": row["nogil"]})
        lines.append(
            f"{row['workload']:27} | {row['threads']:3} | {row['gil']:9.0f} | "
            f"{row['nogil']:12.0f} | {row['nogil'] / row['gil']:9.2f}x | "
            f"{row['gil'] / base['gil']:11.2f}x | {row['nogil'] / base['nogil']:14.2f}x"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run()))
