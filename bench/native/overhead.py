"""CPU time per generated token outside the model, before and after the native core.

Two runtimes see the same 16-client streaming load on `builtin://tiny`, in rotated rounds: the
runtime as it is ("after") and the runtime at the last commit before the native core
("before", run from a git worktree of that commit with the same environment). py-spy samples
each server's active Python threads during the load: samples inside mlx-lm (the model step,
`BatchGenerator.next` and below) are the model; every other sample (HTTP, asyncio, the output
path, admission, the prefix cache, metrics) is the runtime's own overhead. Process CPU time is
reported beside it, but OpenBLAS's spinning threads blur it, which is why the split comes from
the samples.
"""

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.operator.procfs import cpu_seconds
from bench.serving.client import run_load
from bench.serving.servers import running_server
from modelkube_serving.models.builtin import ensure_builtin

BEFORE_COMMIT = "894ef74090ea5ea5b2e193e9029e1f4799783a48"  # the last runtime without it
REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 16
REQUESTS = 48
MAX_TOKENS = 96


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


PY_SPY_RATE = 250  # samples per second


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("bench/native needs py-spy (uv sync installs it with the dev group)")
    return found


@contextlib.contextmanager
def sampling(pid: int, out: Path) -> Iterator[None]:
    """py-spy records `pid` (its active threads, raw collapsed stacks) while the block runs."""
    command = [
        py_spy(), "record", "--pid", str(pid), "--rate", str(PY_SPY_RATE),
        "--format", "raw", "--output", str(out), "--nonblocking",
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # attached before the load starts
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes the profile on SIGINT
        _, err = proc.communicate(timeout=60)
        if not out.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")


def split_samples(profile: Path) -> tuple[int, int]:
    """(samples in the model, samples elsewhere) from a raw collapsed-stack profile."""
    model = other = 0
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        if "mlx_lm/" in stack:
            model += int(count)
        else:
            other += int(count)
    return model, other


async def _server_round(url: str, pid: int, first: int, profile: Path) -> dict[str, float]:
    cpu = cpu_seconds(pid) or 0.0
    with sampling(pid, profile):
        load = await run_load(url, "tiny", CLIENTS, REQUESTS, first, MAX_TOKENS, 300.0)
    spent = (cpu_seconds(pid) or 0.0) - cpu
    errors = sum(1 for r in load.results if not r.ok)
    if errors:
        raise RuntimeError(f"{errors} requests failed, e.g. {load.results[0].error}")
    model, other = split_samples(profile)
    return {
        "cpu_s": spent,
        "tokens": sum(r.completion_tokens for r in load.results),
        "wall_s": load.wall_s,
        "model_s": model / PY_SPY_RATE,
        "other_s": other / PY_SPY_RATE,
    }


async def _measure(rounds: int, workdir: Path) -> dict[str, list[dict[str, float]]]:
    samples: dict[str, list[dict[str, float]]] = {"after": [], "before": []}
    path = ensure_builtin("tiny")
    with (
        before_tree() as tree,
        running_server("ours", "tiny", path, label="overhead-after") as after,
        running_server(
            "ours",
            "tiny",
            path,
            # Its modelkube_serving comes first on the path and shadows the installed one.
            env={"PYTHONPATH": str(tree / "serving" / "src")},
            label="overhead-before",
        ) as before,
    ):
        for r in range(rounds):
            first = 1000 * (r + 1)  # fresh prompts each round: no prefix-cache help
            order = ["after", "before"] if r % 2 == 0 else ["before", "after"]
            for name in order:
                srv = after if name == "after" else before
                profile = workdir / f"{name}-{r}.txt"
                samples[name].append(await _server_round(srv.base_url, srv.pid, first, profile))
    return samples


def run(rounds: int = 4) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="modelkube-profiles-") as tmp:
        samples = asyncio.run(_measure(rounds, Path(tmp)))
    result: dict[str, Any] = {"rounds": rounds}
    for name in ("before", "after"):
        tokens = sum(s["tokens"] for s in samples[name])
        result[name] = {
            "cpu_ms_per_token": sum(s["cpu_s"] for s in samples[name]) / tokens * 1e3,
            "model_ms_per_token": sum(s["model_s"] for s in samples[name]) / tokens * 1e3,
            "overhead_ms_per_token": sum(s["other_s"] for s in samples[name]) / tokens * 1e3,
            "tok_per_s": tokens / sum(s["wall_s"] for s in samples[name]),
        }
    result["overhead_drop"] = 1 - result["after"]["overhead_ms_per_token"] / max(
        result["before"]["overhead_ms_per_token"], 1e-9
    )
    return result


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{CLIENTS} clients, builtin://tiny, up to {MAX_TOKENS} tokens per request, "
        f"{result['rounds']} rounds each; py-spy at {PY_SPY_RATE} Hz",
        "runtime                 | overhead ms/token | model ms/token | process CPU ms/token "
        "| tok/s",
        "------------------------+-------------------+---------------+---------------------+------",
    ]
    for name, label in (("before", "before (Python path)"), ("after", "after (native core)")):
        r = result[name]
        lines.append(
            f"{label:23} | {r['overhead_ms_per_token']:17.3f} | {r['model_ms_per_token']:13.3f} "
            f"| {r['cpu_ms_per_token']:19.3f} | {r['tok_per_s']:5.0f}"
        )
    lines.append(
        f"runtime overhead per token (samples outside mlx-lm): "
        f"{result['overhead_drop'] * 100:.0f}% lower after"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run()))
