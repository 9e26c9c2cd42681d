"""`warmstart rollback`: serve the version that served before the current one (the
promotion history, serve/versions.py), the same way `warmstart promote` does: the running
app with --url, else LATEST for the next start."""

from __future__ import annotations

import argparse

from flows.promote import LOCATIONS as LOCATIONS
from flows.promote import add_common, config, promote


def add_args(p: argparse.ArgumentParser) -> None:
    add_common(p)


def run(args: argparse.Namespace) -> None:
    out = promote(config(args))
    print(f"{out['where']}: serving {out['version']} again (was {out['previous']})"
          + (f" after {out['seconds']:.1f} s" if "seconds" in out else ""))


if __name__ == "__main__":
    from flows.cli import run_module

    run_module("rollback")
