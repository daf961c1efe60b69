"""`python -m bench.operator`: N ModelServices at once against a real control plane."""

import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
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


def run_rounds(plan: Plan, workdir: Path) -> list[dict[str, Any]]:
    cp = ControlPlane(workdir)
    try:
        log(f"starting the control plane in {workdir}")
        cp.start(crds=REPO / "crds")  # CRDs before the controllers: GC knows the kinds
        kubeconfig = operator_kubeconfig(cp)
        return [dataclasses.asdict(Round(cp, kubeconfig, n, plan).run()) for n in plan.counts]
    finally:
        log("stopping the control plane")
        cp.stop()
        apiserver_log = workdir / "kube-apiserver.log"
        if apiserver_log.exists():
            shutil.copy(apiserver_log, plan.log_dir / "kube-apiserver.log")


def _print_findings(rounds: list[dict[str, Any]]) -> None:
    for r in rounds:
        path = Path(r["operator_log"])
        print(findings_text(f"operator log, N={r['count']}", path, scan(path)))
        if r["error"]:
            print(f"    round error: {r['error']}")


def main(argv: list[str] | None = None) -> int:
    plan = build_plan(parse_args(argv))
    plan.log_dir.mkdir(parents=True, exist_ok=True)
    machine = _machine()
    log(f"plan: {plan}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    try:
        rounds = run_rounds(plan, workdir)
    finally:
        if not plan.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    targets = evaluate(rounds)
    print()
    print(table(rounds), end="\n\n")
    print(LEGEND, end="\n\n")
    print(targets_text(targets), end="\n\n")
    _print_findings(rounds)
    payload = {
        "machine": machine,
        "plan": dataclasses.asdict(plan),
        "rounds": rounds,
        "targets": [dataclasses.asdict(t) for t in targets],
    }
    plan.output.parent.mkdir(parents=True, exist_ok=True)
    plan.output.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"\nresults written to {plan.output}")
    return 0 if all(r["complete"] and not r["error"] for r in rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
