"""`python -m bench.native`: each native component against its Python equivalent, in one run.

Writes bench/results/native.json and prints the tables with their ratios.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench.native import admission, output, overhead, prefix, relay, threads

TARGET_OUTPUT_SPEEDUP = 10.0  # the output path at batch 32


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.native", description=__doc__)
    parser.add_argument("--output", type=Path, default=Path("bench/results/native.json"))
    parser.add_argument("--skip-overhead", action="store_true", help="skip the serving profile")
    parser.add_argument(
        "--skip-threads", action="store_true", help="skip the GIL vs free-threaded section"
    )
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

    print("== output path: detokenize + stop strings + SSE frames, per engine step")
    results["output_path"] = output.run()
    print(output.table(results["output_path"]), end="\n\n")

    print("== admission: 1,000 queued requests over 10 keys")
    results["admission"] = admission.run()
    print(admission.table(results["admission"]), end="\n\n")

    print("== prefix-cache index vs mlx-lm's LRUPromptCache")
    results["prefix_index"] = prefix.run()
    print(prefix.table(results["prefix_index"]), end="\n\n")

    print("== streams relayed through asyncio: reader CPU per chunk, native client vs httpx")
    results["relay"] = relay.run()
    print(relay.table(results["relay"]), end="\n\n")

    if not args.skip_overhead:
        print("== the runtime's CPU per generated token, before and after the native core")
        results["overhead"] = overhead.run()
        print(overhead.table(results["overhead"]), end="\n\n")

    if not args.skip_threads:
        print("== threads: calls/s with 1-8 threads, CPython with the GIL vs free-threaded 3.14t")
        results["threads"] = threads.run()
        print(threads.table(results["threads"]), end="\n\n")

    batch32 = next(r for r in results["output_path"] if r["batch"] == 32)
    met = batch32["speedup"] >= TARGET_OUTPUT_SPEEDUP
    verdict = "MET" if met else "NOT MET"
    print(
        f"target: output path >= {TARGET_OUTPUT_SPEEDUP:g}x its Python equivalent at batch 32: "
        f"{verdict} ({batch32['speedup']:.1f}x)"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
