"""Time and peak memory of `warmstart generate` at a scale (goal at `seed`: < 10 min, < 8 GB).

    python -m bench.generate --scale seed

Ray's start-up is timed apart from generation; memory covers the driver and every Ray
process it started.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import tempfile
import time
from pathlib import Path

import psutil

from bench import report
from bench.memory import PeakMemory
from flows.generate import SCALES, GenerateConfig, generate
from flows.runtime import start_ray


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=list(SCALES), default="seed")
    p.add_argument("--out", type=Path, default=None, help="default: a temporary folder")
    p.add_argument("--save", action="store_true", help="append the figures to bench/results/")
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="warmstart-bench-")) / "data"

    t0 = time.perf_counter()
    with PeakMemory() as mem, start_ray():
        t_ray = time.perf_counter() - t0
        stats = generate(GenerateConfig(out=out, scale=args.scale))
    total = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    lines = [
        f"warmstart generate --scale {args.scale}  ({dt.date.today()}, {platform.node()}, "
        f"{psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB)",
        f"  rows: {int(stats['impressions']):,} impressions, {int(stats['users']):,} users, "
        f"{int(stats['items']):,} items; {size:.0f} MiB on disk",
        f"  time: {stats['seconds']:.1f} s generating + {t_ray:.1f} s starting Ray "
        f"= {total:.1f} s wall",
        f"  {mem.report()}",
    ]
    report(lines, f"generate-{args.scale}", args.save)

if __name__ == "__main__":
    main()
