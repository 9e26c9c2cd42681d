"""Wall time, throughput, peak memory and quality of the whole training flow at a scale
(goal at `seed`: under 60 minutes on 2 cores).

    python -m bench.train --scale small --save

The data folder is generated first when it is absent, timed apart. Every step runs
(`reuse_steps=False`); each step's time is the one its `_step.json` records, each epoch's
figures come from the published manifest. Rows/s is for the whole job: rank 0's rows x the
number of workers over the epoch's wall time, validation included (the workers' shards are
near equal). Memory covers the driver and every Ray process it started.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import psutil

from bench import report, workdir_args, workdir_paths
from bench.memory import PeakMemory
from flows.generate import SCALES, GenerateConfig, generate
from flows.layout import available_days, count_rows, read_items, read_users
from flows.runtime import start_ray
from flows.train import TrainConfig, train

STEPS = ("embed_content", "fit_features", "train_retrieval", "embed_items", "build_index",
         "train_ranker", "fit_sources", "evaluate", "publish")
MODELS = {"two_tower": "train_retrieval", "dlrm": "train_ranker"}  # model -> its step


def ensure_data(data: Path, scale: str) -> str:
    """Generate `data` at `scale` (seed 0) when the folder is absent; says which happened."""
    if data.exists():
        return f"data {data} (existing)"
    t0 = time.perf_counter()
    with start_ray():
        generate(GenerateConfig(out=data, scale=scale, seed=0))
    return f"data {data} (generated at scale {scale} in {time.perf_counter() - t0:.0f} s)"


def describe_data(data: Path) -> str:
    days = available_days(data)
    return (f"{count_rows(data, tuple(days)):,} impressions over days {days[0]}-{days[-1]}, "
            f"{len(read_users(data)):,} users, {len(read_items(data)):,} items")


def machine() -> str:
    return (f"{dt.date.today()}, {platform.node()}, {psutil.cpu_count()} cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB")


def load_line(start: tuple[float, float, float]) -> str:
    """The machine's load average around a run: above the core count, other work (or Ray's
    own oversubscription) competed for the CPUs and stretched the times."""
    end = os.getloadavg()
    return (f"load average: {start[0]:.1f} (1 min) at the start; {end[0]:.1f} (1 min), "
            f"{end[2]:.1f} (15 min) at the end; {psutil.cpu_count()} cores")


def step_seconds(artifacts: Path, since: float) -> dict[str, float]:
    """Each step's recorded time, from its newest `_step.json` written after `since`
    (seconds since the epoch); steps that did not run since then are left out."""
    out = {}
    for step in STEPS:
        records = [p for p in (artifacts / "_steps" / step).glob("*/_step.json")
                   if p.stat().st_mtime >= since]
        if records:
            newest = max(records, key=lambda p: p.stat().st_mtime)
            out[step] = float(json.loads(newest.read_text())["seconds"])
    return out


def epochs(metrics: dict[str, Any], model: str) -> list[dict[str, Any]]:
    """Per-epoch history of `model`: {"epochs": [...]}, or the bare list (versions that
    `finetune()` published before it stored the same form as `train()`)."""
    history = metrics.get(f"{model}_epochs", [])
    return history["epochs"] if isinstance(history, dict) else history


def epoch_table(metrics: dict[str, Any], workers: int,
                steps: dict[str, float] | None = None) -> list[str]:
    """One line per epoch and one per model: rows/s of the whole job, seconds, losses."""
    lines = [f"  {'epoch':<18}{'rows/s':>10}{'seconds':>10}{'rows':>12}{'train loss':>12}"
             f"{'val loss':>10}"]
    for model in MODELS:
        hist = epochs(metrics, model)
        for e in hist:
            rows, secs = e["train_rows"] * workers, e.get("epoch_seconds", math.nan)
            name = f"{model} {int(e['epoch']) + 1}/{len(hist)}"
            lines.append(f"    {name:<16}{rows / secs:>10,.0f}{secs:>10.1f}{rows:>12,.0f}"
                         f"{e['train_loss']:>12.4f}{e['val_loss']:>10.4f}")
        rows = sum(e["train_rows"] for e in hist) * workers
        secs = sum(e.get("epoch_seconds", math.nan) for e in hist)
        step = (steps or {}).get(MODELS[model])
        note = f"  (of its {step:.1f} s step)" if step else ""
        lines.append(f"    {model + ' all':<16}{rows / secs:>10,.0f}{secs:>10.1f}{rows:>12,.0f}"
                     f"{note}")
    return lines


def metric(block: dict[str, Any], model: str, sl: str, name: str) -> float:
    """One figure of an evaluation block; NaN when the slice had no rows."""
    return float(block.get(model, {}).get(sl, {}).get(name, math.nan))


def headline(ev: dict[str, Any]) -> list[str]:
    """Two-Tower recall@K and DLRM AUC, overall and cold, beside popularity and the oracle."""
    r, g = ev["retrieval"], ev["ranking"]
    k = r["k"]
    lines = [f"  quality on test days {', '.join(map(str, ev['test_days']))}: recall@{k} on "
             f"{r['users']:,} users ({r['cold_users']:,} cold), AUC on {g['impressions']:,} "
             f"impressions ({g['cold_impressions']:,} cold)",
             f"  {'':<24}{'overall':>9}{'cold':>9}"]
    for label, block, model, name, fmt in (
            (f"recall@{k}", r, "two_tower", f"recall@{k}", ".3f"),
            ("", r, "popularity", f"recall@{k}", ".3f"),
            ("", r, "oracle", f"recall@{k}", ".3f"),
            ("AUC", g, "dlrm", "auc", ".4f"),
            ("", g, "popularity", "auc", ".4f"),
            ("", g, "oracle", "auc", ".4f")):
        if model in block:
            lines.append(f"  {label:<12}{model:<12}"
                         + "".join(f"{metric(block, model, sl, name):>9{fmt}}"
                                   for sl in ("overall", "cold")))
    if "oracle" in r:
        share = (metric(r, "two_tower", "overall", f"recall@{k}")
                 / metric(r, "oracle", "overall", f"recall@{k}"))
        lines.append(f"  two_tower recall@{k} is {share:.0%} of the oracle's")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    workdir_args(p, list(SCALES), "holds data/ and artifacts/ (default: runs/bench-<scale>)")
    args = p.parse_args()
    workdir, data = workdir_paths(args)
    cfg = TrainConfig(data=data, artifacts=workdir / "artifacts", reuse_steps=False)
    workers = cfg.two_tower_loop.num_workers
    if cfg.dlrm_loop.num_workers != workers:
        raise ValueError("rows/s assumes both models train on the same number of workers")

    origin = ensure_data(data, args.scale)
    load = os.getloadavg()
    since = time.time()
    t0 = time.perf_counter()
    with PeakMemory() as mem, start_ray():
        t_ray = time.perf_counter() - t0
        folder = train(cfg)
        t_flow = time.perf_counter() - t0 - t_ray
    total = time.perf_counter() - t0
    metrics = json.loads((folder / "manifest.json").read_text())["metrics"]
    steps = step_seconds(cfg.artifacts, since)

    lines = [f"warmstart train --scale {args.scale}  ({machine()})",
             f"  {origin}: {describe_data(data)}",
             f"  split: train days {cfg.split.train[0]}-{cfg.split.train[-1]}, val "
             f"{cfg.split.val[0]}-{cfg.split.val[-1]}, test {cfg.split.test[0]}-"
             f"{cfg.split.test[-1]}; {workers} Ray Train workers; every step run; "
             f"version {folder.name}",
             f"  wall: {total:.1f} s = {t_ray:.1f} s starting Ray + {t_flow:.1f} s train() + "
             f"{total - t_ray - t_flow:.1f} s stopping Ray (the manifest's train_seconds, "
             f"taken as publishing starts: {metrics['train_seconds']:.1f} s)",
             f"  {'step':<18}{'seconds':>10}{'share':>8}"]
    for step, secs in steps.items():
        lines.append(f"    {step:<16}{secs:>10.1f}{secs / t_flow:>8.0%}")
    rest = t_flow - sum(steps.values())
    lines.append(f"    {'outside steps':<16}{rest:>10.1f}{rest / t_flow:>8.0%}")
    lines += epoch_table(metrics, workers, steps)
    lines += [f"  {mem.report()}", f"  {load_line(load)}"]
    lines += headline(metrics["evaluation"])
    report(lines, f"train-{args.scale}", args.save)


if __name__ == "__main__":
    main()
