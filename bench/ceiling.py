"""How much ranking AUC a model can reach when it must learn users from their training days.

The oracle's AUC uses each user's true category affinities and preferred styles. A learned
model only sees the training days. This benchmark scores test impressions with the TRUE
click model in which only the user's preferences are replaced by estimates from training
impressions (category shares, smoothed; the most-seen style per category) and, in a second
variant, impressions plus clicks. Everything else (item quality, promotions, gender rule,
context multipliers) stays exact, so the result bounds what user history can support.

    python -m bench.ceiling --data <folder written by warmstart generate>
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from flows.generate.catalog import CATEGORIES
from flows.generate.world import DEVICES, World
from flows.layout import Split, read_interactions, read_items
from train.metrics import auc


def ceilings(data: Path, split: Split | None = None) -> dict[str, dict[str, float]]:
    split = split or Split()
    items = read_items(data)
    world = World.load(data / "truth", items)
    user_at = pd.Series(np.arange(world.n_users), index=world.user_ids)
    item_at = pd.Series(np.arange(len(items)), index=items["item_id"])
    train = read_interactions(data, split.train, ("user_id", "item_id", "label"))
    test = read_interactions(data, split.test, ("user_id", "item_id", "hour", "weekday",
                                                "device", "label", "p_click"))
    u = user_at[train["user_id"]].to_numpy()
    i = item_at[train["item_id"]].to_numpy()
    clicked = train["label"].to_numpy() == 1
    cat, style = world.item_category, world.item_style
    shown = np.zeros((world.n_users, len(CATEGORIES)))
    np.add.at(shown, (u, cat[i]), 1)
    clicks = np.zeros_like(shown)
    np.add.at(clicks, (u[clicked], cat[i[clicked]]), 1)
    by_style = np.zeros((world.n_users, len(CATEGORIES), style.max() + 1))
    np.add.at(by_style, (u, cat[i], style[i]), 1)
    # most-seen style per category; the true one where the user saw none (generous)
    pref = np.where(by_style.sum(2) > 0, by_style.argmax(2), world.user_pref_style)

    tu = user_at[test["user_id"]].to_numpy()
    ti = item_at[test["item_id"]].to_numpy()
    device = test["device"].map({d: n for n, d in enumerate(DEVICES)}).to_numpy()
    slot = test["hour"].to_numpy() // 6
    weekend = (test["weekday"].to_numpy() >= 5).astype(int)
    y = test["label"].to_numpy()
    known = np.isin(test["user_id"], train["user_id"].unique())
    out = {"oracle": {"overall": auc(y, test["p_click"].to_numpy()),
                      "known": auc(y[known], test["p_click"].to_numpy()[known])}}
    for name, counts in (("impressions", shown + 0.3), ("impressions+clicks",
                                                        shown + 2 * clicks + 1)):
        estimated = replace(world, user_affinity=counts / counts.sum(1, keepdims=True),
                            user_pref_style=pref)
        s = estimated.click_logit(tu, ti, device, slot, weekend)
        out[f"true model, users from {name}"] = {"overall": auc(y, s),
                                                 "known": auc(y[known], s[known])}
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ceiling")
    p.add_argument("--data", type=Path, required=True)
    args = p.parse_args()
    print(f"ranking AUC on test days, {args.data}")
    for name, v in ceilings(args.data).items():
        print(f"  {name:<45} overall {v['overall']:.4f}   known users {v['known']:.4f}")


if __name__ == "__main__":
    main()
