"""CPU time per generated token outside the model, before and after the native core.

Three systems see the same 16-client streaming load on `builtin://tiny`, in rotated rounds:
the runtime as it is ("after"), the runtime at the last commit before the native core
("before", run from a git worktree of that commit with the same environment), and mlx-lm's
`batch_generate` in-process with the same prompts (the model alone). CPU time is the
process's own utime+stime; what a server spends per token beyond the model alone is its
overhead: HTTP, asyncio, the output path, admission, metrics.
"""

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.serving.ceiling import running_ceiling
from bench.serving.client import run_load
from bench.serving.servers import HOST, LOG_DIR, _stop, _wait_ready, blas_env, free_port
from modelkube_serving.models.builtin import ensure_builtin

BEFORE_COMMIT = "894ef74090ea5ea5b2e193e9029e1f4799783a48"  # the last runtime without it
REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 16
REQUESTS = 48
MAX_TOKENS = 96


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def before_tree() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="modelkube-before-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(tree), BEFORE_COMMIT],
            check=True,
            capture_output=True,
        )
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(tree)],
                check=False,
                capture_output=True,
            )


@contextlib.contextmanager
def server(name: str, pythonpath: Path | None) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = blas_env()
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)  # its modelkube_serving shadows the installed one
    command = [
        sys.executable, "-m", "modelkube_serving", "serve", "--model", "builtin://tiny",
        "--host", HOST, "--port", str(port), "--max-concurrent-requests", "64",
    ]  # fmt: skip
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"overhead-{name}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, env=env, stdout=sink, stderr=sink, cwd=REPO_ROOT)
        try:
            _wait_ready(proc, f"http://{HOST}:{port}/readyz", log)
            yield f"http://{HOST}:{port}", proc.pid
        finally:
            _stop(proc)


async def _server_round(url: str, pid: int, first: int) -> dict[str, float]:
    cpu = cpu_seconds(pid)
    load = await run_load(url, "tiny", CLIENTS, REQUESTS, first, MAX_TOKENS, 300.0)
    spent = cpu_seconds(pid) - cpu
    errors = sum(1 for r in load.results if not r.ok)
    if errors:
        raise RuntimeError(f"{errors} requests failed, e.g. {load.results[0].error}")
    tokens = sum(r.completion_tokens for r in load.results)
    return {"cpu_s": spent, "tokens": tokens, "wall_s": load.wall_s}


async def _measure(rounds: int) -> dict[str, list[dict[str, float]]]:
    samples: dict[str, list[dict[str, float]]] = {"after": [], "before": [], "model": []}
    with (
        before_tree() as tree,
        server("after", None) as after,
        server("before", tree / "serving" / "src") as before,
    ):
        async with running_ceiling("tiny", ensure_builtin("tiny")) as ceiling:
            for r in range(rounds):
                first = 1000 * (r + 1)  # fresh prompts each round: no prefix-cache help
                order = ["after", "before", "model"]
                for name in order[r % 3 :] + order[: r % 3]:
                    if name == "model":
                        reply = await ceiling.measure(CLIENTS, REQUESTS, first, MAX_TOKENS)
                        sample = {
                            "cpu_s": float(reply["cpu_s"]),
                            "tokens": float(reply["generated_tokens"]),
                            "wall_s": float(reply["wall_s"]),
                        }
                    else:
                        url, pid = after if name == "after" else before
                        sample = await _server_round(url, pid, first)
                    samples[name].append(sample)
    return samples


def run(rounds: int = 5) -> dict[str, Any]:
    samples = asyncio.run(_measure(rounds))

    def per_token_ms(name: str) -> float:
        cpu = sum(s["cpu_s"] for s in samples[name])
        tokens = sum(s["tokens"] for s in samples[name])
        return cpu / tokens * 1e3

    model = per_token_ms("model")
    result: dict[str, Any] = {"model_cpu_ms_per_token": model, "rounds": rounds}
    for name in ("before", "after"):
        total = per_token_ms(name)
        tokens = sum(s["tokens"] for s in samples[name])
        wall = sum(s["wall_s"] for s in samples[name])
        result[name] = {
            "cpu_ms_per_token": total,
            "overhead_ms_per_token": total - model,
            "tok_per_s": tokens / wall,
        }
    result["overhead_drop"] = 1 - result["after"]["overhead_ms_per_token"] / max(
        result["before"]["overhead_ms_per_token"], 1e-9
    )
    return result


def table(result: dict[str, Any]) -> str:
    lines = [
        f"16 clients, builtin://tiny, {MAX_TOKENS} tokens per request; the model alone (mlx-lm "
        f"batch_generate): {result['model_cpu_ms_per_token']:.3f} CPU ms/token",
        "runtime                 | CPU ms/token | overhead ms/token (beyond the model) | tok/s",
        "------------------------+--------------+-------------------------------------+------",
    ]
    for name, label in (("before", "before (Python path)"), ("after", "after (native core)")):
        r = result[name]
        lines.append(
            f"{label:23} | {r['cpu_ms_per_token']:12.3f} | {r['overhead_ms_per_token']:35.3f} "
            f"| {r['tok_per_s']:5.0f}"
        )
    lines.append(f"overhead per token: {result['overhead_drop'] * 100:.0f}% lower after")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run()))
