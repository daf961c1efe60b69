"""`python -m bench.finetune`: training speed and adapter handoff, each against its peer.

Writes bench/results/finetune.json and prints the tables with their ratios.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.finetune import handoff, training
from bench.serving.servers import blas_env

TARGET_TRAINING = 1.0  # our iterations/s over mlx_lm.lora's


def _adapter() -> Path:
    out = Path(tempfile.mkdtemp(prefix="bench-adapter-")) / "tuned"
    result = subprocess.run(
        [sys.executable, "-m", "modelkube_serving", "finetune", "--base", "builtin://tiny",
         "--data", str(training.DATA), "--output", str(out), "--iterations", "20",
         "--learning-rate", "1e-3", "--progress", "none"],
        env=blas_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.finetune", description=__doc__)
    parser.add_argument("--output", type=Path, default=Path("bench/results/finetune.json"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}

    print(f"== training: iterations/s, builtin://tiny, LoRA rank 8, batch 4 ({args.rounds} rounds)")
    results["training"] = training.run(rounds=args.rounds)
    print(training.table(results["training"]), end="\n\n")

    adapter = _adapter()
    try:
        print("== handoff: an adapter on disk -> the first request served with it")
        results["handoff"] = handoff.run(adapter, rounds=3)
        print(handoff.table(results["handoff"]), end="\n\n")
    finally:
        shutil.rmtree(adapter.parent, ignore_errors=True)

    ratio = results["training"][1]["ours_vs_this"]  # the mlx_lm.lora row
    verdict = "MET" if ratio >= TARGET_TRAINING else "NOT MET"
    target = f"modelkube finetune >= {TARGET_TRAINING:g}x mlx_lm.lora iterations/s"
    print(f"target: {target}: {verdict} ({ratio:.2f}x)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
