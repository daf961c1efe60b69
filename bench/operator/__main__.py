"""`python -m bench.operator`: N ModelServices at once against a real control plane."""

import dataclasses
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from bench.operator.burst import Round, log
from bench.operator.config import Plan, build_plan, parse_args
from bench.operator.logscan import findings_text, scan
from bench.operator.report import LEGEND, evaluate, table, targets_text
from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import REPO, operator_kubeconfig


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0)),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


Rounds = list[dict[str, Any]]


def run_rounds(plan: Plan, workdir: Path, done: Callable[[Rounds], None]) -> Rounds:
    """Every round in turn; `done` gets the rounds so far after each one."""
    cp = ControlPlane(workdir)
    rounds: Rounds = []
    try:
        log(f"starting the control plane in {workdir}")
        cp.start(crds=REPO / "crds")  # CRDs before the controllers: GC knows the kinds
        kubeconfig = operator_kubeconfig(cp)
        for count in plan.counts:
            rounds.append(dataclasses.asdict(Round(cp, kubeconfig, count, plan).run()))
            done(rounds)
        return rounds
    finally:
        _stop(cp, plan.log_dir)


def _stop(cp: ControlPlane, log_dir: Path) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a SIGTERM now would orphan processes
    log("stopping the control plane")
    cp.stop()
    apiserver_log = cp.workdir / "kube-apiserver.log"
    if apiserver_log.exists():
        shutil.copy(apiserver_log, log_dir / "kube-apiserver.log")


def _print_findings(rounds: list[dict[str, Any]]) -> None:
    for r in rounds:
        path = Path(r["operator_log"])
        print(findings_text(f"operator log, N={r['count']}", path, scan(path)))
        if r["error"]:
            print(f"    round error: {r['error']}")


def _write(plan: Plan, machine: dict[str, Any], rounds: Rounds) -> None:
    payload = {
        "machine": machine,
        "plan": dataclasses.asdict(plan),
        "rounds": rounds,
        "targets": [dataclasses.asdict(t) for t in evaluate(rounds)],
    }
    plan.output.parent.mkdir(parents=True, exist_ok=True)
    plan.output.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def _terminated(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks stop the operator and control plane;
    a second one is ignored so that the cleanup finishes (SIGKILL still ends it)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    plan = build_plan(parse_args(argv))
    plan.log_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _terminated)
    machine = _machine()
    log(f"plan: {plan}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    try:
        rounds = run_rounds(plan, workdir, lambda so_far: _write(plan, machine, so_far))
    finally:
        if not plan.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(table(rounds), end="\n\n")
    print(LEGEND, end="\n\n")
    print(targets_text(evaluate(rounds)), end="\n\n")
    _print_findings(rounds)
    print(f"\nresults written to {plan.output}")
    return 0 if all(r["complete"] and not r["error"] for r in rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
