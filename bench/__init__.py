"""Benchmarks that print measured figures; `--save` keeps a dated copy in bench/results/."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path


def report(lines: list[str], name: str, save: bool) -> None:
    """Print a benchmark's lines, and with `save` write them to results/<date>-<name>.txt."""
    print("\n".join(lines))
    if save:
        path = Path(__file__).parent / "results" / f"{dt.date.today()}-{name}.txt"
        path.write_text("\n".join(lines) + "\n")


def workdir_args(p: argparse.ArgumentParser, scales: list[str], workdir_help: str) -> None:
    """--scale, --workdir, --data and --save, shared by the training benchmarks."""
    p.add_argument("--scale", choices=scales, default="small")
    p.add_argument("--workdir", type=Path, default=None, help=workdir_help)
    p.add_argument("--data", type=Path, default=None,
                   help="data folder, generated when absent (default: <workdir>/data)")
    p.add_argument("--save", action="store_true", help="write the figures to bench/results/")


def workdir_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """(workdir, data folder) from `workdir_args`' flags."""
    from flows.layout import RUNS

    workdir = args.workdir or RUNS / f"bench-{args.scale}"
    return workdir, args.data or workdir / "data"


MOVIELENS = Path(__file__).parents[2] / "shared" / "datasets" / "movielens-100k"


def movielens_args(p: argparse.ArgumentParser, seed: int) -> None:
    """--src (MovieLens-100K's files), --workdir, --seed and --save, shared by the benchmarks
    on MovieLens."""
    p.add_argument("--src", type=Path, default=MOVIELENS, help="MovieLens-100K files")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--seed", type=int, default=seed)
    p.add_argument("--save", action="store_true", help="write the figures to bench/results/")
