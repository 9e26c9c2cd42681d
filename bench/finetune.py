"""Daily fine-tuning against retraining from scratch, both scored on the same test days
(goal: AUC within 0.01 of retraining's, in under a third of its time).

    python -m bench.finetune --scale small --save

Three versions, each evaluated on test days 12-13 with the retraining's split (training
popularity over days 0-9):
    base      trained on days 0-8, validated on 9-11 (reused from `bench.train`'s artifacts
              when one is there, else trained with the default TrainConfig)
    finetune  `finetune()` of base on day 9 (plus its replay sample), validated on 10-11
    retrain   `train()` from scratch on days 0-9, validated on 10-11, every step run
Both timings include what each call does besides training: fine-tuning evaluates the old
and new versions on days 10-11, retraining embeds content, builds the index and evaluates.
"cold" means outside a model's user vocabulary: the fine-tuned version keeps base's (days
0-8), so users first seen on day 9 are cold to it and known to the retrained one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from bench import report, workdir_args, workdir_paths
from bench.memory import PeakMemory
from bench.train import (
    MODELS,
    describe_data,
    ensure_data,
    epochs,
    load_line,
    machine,
    metric,
)
from flows.evaluate import EvalConfig, evaluate
from flows.finetune import FinetuneConfig, finetune
from flows.generate import SCALES
from flows.layout import Split
from flows.runtime import start_ray
from flows.train import TrainConfig, train
from train.artifacts import load_bundle

BASE = Split()  # days 0-8 / 9-11 / 12-13
RETRAIN = Split(train=tuple(range(10)), val=(10, 11), test=(12, 13))
NEW_DAYS, VAL_DAYS = (9,), (10, 11)


def base_version(root: Path, data: Path) -> tuple[Path, str]:
    """The newest version under `root` trained from `data` on BASE's days, or a new one."""
    window = {"data": str(data.resolve()), "train_days": list(BASE.train),
              "val_days": list(BASE.val), "test_days": list(BASE.test)}
    found = sorted(m.parent for m in root.glob("*/manifest.json")
                   if json.loads(m.read_text())["data_window"] == window)
    if found:
        took = json.loads((found[-1] / "manifest.json").read_text())["metrics"]["train_seconds"]
        return found[-1], f"reused from {root}; its train() took {took:.0f} s"
    t0 = time.perf_counter()
    folder = train(TrainConfig(data=data, artifacts=root, split=BASE))
    return folder, f"trained now in {time.perf_counter() - t0:.0f} s"


def quality(version: Path, data: Path) -> dict[str, Any]:
    return evaluate(load_bundle(version), data, EvalConfig(split=RETRAIN)).to_dict()


def epoch_seconds(version: Path) -> str:
    """Time spent in training epochs per model, from the version's manifest."""
    metrics = json.loads((version / "manifest.json").read_text())["metrics"]
    parts = []
    for model in MODELS:
        hist = epochs(metrics, model)
        secs = sum(e.get("epoch_seconds", float("nan")) for e in hist)
        rows = sum(e["train_rows"] for e in hist)
        parts.append(f"{model} {len(hist)} epoch(s) {secs:.0f} s ({rows:,.0f} rows on rank 0)")
    return ", ".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    workdir_args(p, list(SCALES), "bench.train's folder, to reuse its data and base version "
                 "(default: runs/bench-<scale>)")
    args = p.parse_args()
    workdir, data = workdir_paths(args)
    ft_root = workdir / "finetune" / "artifacts"
    re_root = workdir / "retrain" / "artifacts"

    origin = ensure_data(data, args.scale)
    load = os.getloadavg()
    with PeakMemory() as mem, start_ray():
        base, how = base_version(workdir / "artifacts", data)
        # finetune() starts from LATEST and may move it: give it a root holding base alone.
        shutil.rmtree(ft_root, ignore_errors=True)
        shutil.copytree(base, ft_root / base.name)
        (ft_root / "LATEST").write_text(base.name)

        t0 = time.perf_counter()
        tuned = finetune(FinetuneConfig(data=data, artifacts=ft_root, new_days=NEW_DAYS,
                                        val_days=VAL_DAYS))
        t_ft = time.perf_counter() - t0
        t0 = time.perf_counter()
        retrained = train(TrainConfig(data=data, artifacts=re_root, split=RETRAIN,
                                      reuse_steps=False))
        t_re = time.perf_counter() - t0

        versions = {"base 0-8": base, "finetune +9": tuned.path,
                    "retrain 0-9": retrained}
        scores = {name: quality(v, data) for name, v in versions.items()}

    k = next(iter(scores.values()))["retrieval"]["k"]
    rows = [("DLRM AUC", "ranking", "dlrm", "auc", ".4f"),
            (f"Two-Tower recall@{k}", "retrieval", "two_tower", f"recall@{k}", ".3f")]
    names = list(versions)
    lines = [f"fine-tuning vs retraining, --scale {args.scale}  ({machine()})",
             f"  {origin}: {describe_data(data)}",
             f"  base      {base.name} ({how})",
             f"  finetune  {tuned.version}: "
             f"{'promoted' if tuned.promoted else 'not promoted'} on days 10-11 ("
             + ", ".join(f"{m} {b:.4f} -> {a:.4f}" for m, (b, a) in tuned.compare.items())
             + ")",
             f"  retrain   {retrained.name}",
             f"    {'test days ' + ', '.join(map(str, RETRAIN.test)):<28}"
             + "".join(f"{n:>14}" for n in names)]
    for label, part, model, name, fmt in rows:
        for sl in ("overall", "cold"):
            lines.append(f"    {label + ' ' + sl:<28}" + "".join(
                f"{metric(scores[n][part], model, sl, name):>14{fmt}}" for n in names))
    for label, part, count in (("cold test users", "retrieval", "cold_users"),
                               ("cold test impressions", "ranking", "cold_impressions")):
        lines.append(f"    {label:<28}" + "".join(f"{scores[n][part][count]:>14,}"
                                                 for n in names))
    lines.append(f"    {'wall seconds':<28}{'':>14}{t_ft:>14.1f}{t_re:>14.1f}")
    auc_gap = (metric(scores["finetune +9"]["ranking"], "dlrm", "overall", "auc")
               - metric(scores["retrain 0-9"]["ranking"], "dlrm", "overall", "auc"))
    ratio = t_ft / t_re
    lines += [
        f"  in epochs: finetune {epoch_seconds(Path(tuned.path))}",
        f"             retrain  {epoch_seconds(retrained)}",
        f"  AUC finetune - retrain = {auc_gap:+.4f} (goal >= -0.01: "
        f"{'met' if auc_gap >= -0.01 else 'missed'}); time finetune / retrain = {ratio:.2f} "
        f"(goal < 0.33: {'met' if ratio < 1 / 3 else 'missed'}; finetune() reports "
        f"{tuned.seconds:.1f} s)",
        f"  {mem.report()} (over the whole bench)",
        f"  {load_line(load)}",
    ]
    report(lines, f"finetune-{args.scale}", args.save)


if __name__ == "__main__":
    main()
