"""`python -m modelkube_operator`: the operator's commands where the runtime is not installed.

`modelkube` normally comes from modelkube-serving, which gathers every distribution's
subcommands through the `modelkube.commands` entry points. The operator image ships the
operator alone (no MLX, no Rust core), and its `modelkube` runs this module instead.
"""

import argparse
import logging
import sys

from modelkube_operator.cli import register, register_chart, register_crds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelkube", description="modelkube operator")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (register, register_crds, register_chart):
        add(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
