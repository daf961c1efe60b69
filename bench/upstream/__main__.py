"""`python -m bench.upstream`: our proxy and client against LiteLLM's and openai's, in one run.

Direct calls, `modelkube serve` in proxy mode and the LiteLLM proxy under the same wrk load
against one local upstream; then the `openai` client against ours from Python. Writes
bench/results/upstream.json and prints the tables with their ratios and targets.
"""

import dataclasses
import json
import os
import platform
import signal
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.serving.targets import targets_text
from bench.upstream.config import build_plan, parse_args, pinning
from bench.upstream.litellm_proxy import litellm_version
from bench.upstream.load import wrk_binary
from bench.upstream.proxies import log
from bench.upstream.report import client_table, proxy_tables
from bench.upstream.runner import run
from bench.upstream.targets import evaluate


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0)),
        "litellm": litellm_version(),
        "openai": version("openai"),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _cpu_ticks() -> tuple[int, int]:
    """(steal, total) jiffies from /proc/stat: time the hypervisor gave this VM's CPUs away."""
    first = Path("/proc/stat").read_text().splitlines()[0]
    fields = [int(v) for v in first.split()[1:]]
    return fields[7] if len(fields) > 7 else 0, sum(fields)


def main(argv: list[str] | None = None) -> int:
    # A SIGTERM unwinds like Ctrl-C, so every process this bench started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = parse_args(argv)
    plan = build_plan(args)
    if wrk_binary() is None:
        print("wrk is needed: apt-get install -y wrk (make bench installs it)", file=sys.stderr)
        return 1
    pin = pinning(enabled=not args.no_pin)
    log(f"plan: {plan}")
    log(pin.note)
    started = time.monotonic()
    steal_before, total_before = _cpu_ticks()
    results = run(plan, pin)
    steal_after, total_after = _cpu_ticks()
    steal = (steal_after - steal_before) / max(1, total_after - total_before)
    print()
    # On a shared VM, stolen CPU time is the main source of noise between runs.
    print(f"CPU steal during the run: {steal:.0%} of CPU time (read rounds with that in mind)")
    print(proxy_tables(results["proxies"], plan.chunks, pin.note), end="\n\n")
    print(client_table(results["clients"]), end="\n\n")
    targets = evaluate(results)
    print(targets_text(targets))
    payload = {
        "machine": _machine(),
        "plan": dataclasses.asdict(plan),
        "pinning": dataclasses.asdict(pin),
        "seconds": time.monotonic() - started,
        "cpu_steal": steal,
        **results,
        "targets": [dataclasses.asdict(t) for t in targets],
    }
    plan.output.parent.mkdir(parents=True, exist_ok=True)
    plan.output.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"\nresults written to {plan.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
