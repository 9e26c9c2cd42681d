"""The `warmstart` command line, and `python -m flows.<name>`: one definition per flow.

Each flow module defines `add_args(parser)` and `run(args)`, and `COMMANDS` lists the flows
with their one-line help. `warmstart <name> ...` and `python -m flows.<name> ...` build their
parser from that one definition and run the same function with the same error handling, so
`ray job submit -- python -m flows.train ...` takes exactly the flags of `warmstart train`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType
from typing import NoReturn

from train import storage

COMMANDS: dict[str, str] = {
    "generate": "synthetic retail data with ground truth",
    "load": "external files (generic CSV/parquet, MovieLens, Amazon Books, Retail Demo "
            "Store) into the data layout",
    "train": "train Two-Tower and DLRM on Ray Train, index, publish",
    "finetune": "the daily flow: new day(s) + replay, item tower frozen, promoted only "
                "without a regression",
    "evaluate": "test-day quality beside popularity and the oracle",
    "expand": "LLM interest expansion for users with sparse histories: topics, grounding, "
              "interest vectors",
    "experiment": "compare LLM x encoder pairs on cold users: quality, spread, overlap, "
                  "latency, cost; HTML report with charts",
    "serve": "run the Ray Serve app",
    "promote": "switch the served model version: the running app (--url) or LATEST",
    "rollback": "serve the version that served before the current one",
    "demo": "generate -> train -> evaluate -> expand -> serve -> a few requests",
}


def flow(name: str) -> ModuleType:
    """The module of flow `name` (flows.<name>)."""
    return importlib.import_module(f"flows.{name}")


def _define(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    flow(name).add_args(parser)
    parser.set_defaults(command=name)
    return parser


def _verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and tracebacks instead of one-line errors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warmstart", description="Recommendations that are good from the first request.")
    _verbose(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS.items():
        _define(sub.add_parser(name, help=help_text, description=help_text), name)
    return parser


def module_parser(name: str) -> argparse.ArgumentParser:
    """The parser of `python -m flows.<name>`: the flow's own flags, as `warmstart <name>`."""
    parser = argparse.ArgumentParser(prog=f"python -m flows.{name}",
                                     description=COMMANDS[name])
    _verbose(parser)
    return _define(parser, name)


def _execute(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module = flow(args.command)
    # A flow's data and artifact locations may be URIs: LOCATIONS names them (and whether the
    # flow writes there); `run` sees local mirrors (train/storage.py).
    try:
        with storage.mirrors(args, getattr(module, "LOCATIONS", {})):
            module.run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        if args.verbose:
            raise
        print(f"warmstart {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    return _execute(build_parser().parse_args(argv))


def run_module(name: str) -> NoReturn:
    """The body of every flow's `if __name__ == "__main__":` block."""
    sys.exit(_execute(module_parser(name).parse_args()))


if __name__ == "__main__":
    sys.exit(main())
