"""`python -m bench.serving`: modelkube serve vs mlx_lm.server vs batch_generate, and on the
real model (a GGUF file) vs llama.cpp's llama-server."""

import dataclasses
import json
import os
import platform
import sys
import time
from importlib.metadata import version
from typing import Any

from bench.serving.config import Plan, build_plan, parse_args
from bench.serving.llamacpp import VERSION as LLAMA_CPP_VERSION
from bench.serving.report import model_table, multi_turn_table, two_turn_table
from bench.serving.runner import load_average, log, run_plan
from bench.serving.targets import evaluate, targets_text


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0)),
        "mlx": version("mlx"),
        "mlx_lm": version("mlx-lm"),
        "llama_cpp": f"llama-cpp-python {LLAMA_CPP_VERSION} sdist (llama-server)",
        "load_average": load_average(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _write(plan: Plan, payload: dict[str, Any]) -> None:
    plan.output.parent.mkdir(parents=True, exist_ok=True)
    plan.output.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    plan = build_plan(parse_args(argv))
    machine = _machine()
    log(f"plan: {plan}")
    log(f"load average (1/5/15 min): {machine['load_average']}; {machine['cpus']} CPUs")
    results = run_plan(plan)
    print()
    for result in results:
        print(model_table(result), end="\n\n")
    if plan.two_turn:
        print(two_turn_table(results), end="\n\n")
        print(multi_turn_table(results), end="\n\n")
    targets = evaluate(results)
    print(targets_text(targets))
    payload = {
        "machine": machine,
        "plan": dataclasses.asdict(plan),
        "results": results,
        "targets": [dataclasses.asdict(t) for t in targets],
    }
    _write(plan, payload)
    print(f"\nresults written to {plan.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
