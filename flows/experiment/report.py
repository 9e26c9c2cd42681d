"""The experiment's report: five PNG charts and an HTML page that embeds them."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flows.experiment.config import METHODS
from flows.experiment.results import ExperimentResults

CHARTS = ("quality.png", "spread.png", "overlap.png", "latency.png", "cost.png")


def write_charts(r: ExperimentResults, out: Path) -> list[str]:
    """The five PNG charts (plus latency vs tensor_parallel_size when swept); file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn: dict[str, Callable[[ExperimentResults, Any], Any]] = {
        "quality.png": quality_chart, "spread.png": spread_chart,
        "overlap.png": overlap_chart, "latency.png": latency_chart, "cost.png": cost_chart}
    if len({p.tp for p in r.latency}) > 1:
        drawn["latency_tp.png"] = latency_tp_chart
    for name, draw in drawn.items():
        fig = draw(r, plt)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
    return list(drawn)


def quality_chart(r: ExperimentResults, plt: Any) -> Any:
    names = list(r.pairs)
    fig, ax = plt.subplots(figsize=(max(6, 2 + 1.6 * len(names)), 4))
    x = np.arange(len(names))
    bars = {"popularity": [r.baseline["popularity"].recall] * len(names)}
    for mth in METHODS[1:]:
        bars[mth] = [r.pairs[n].quality[mth].recall for n in names]
    w = 0.8 / len(bars)
    for j, (mth, vals) in enumerate(bars.items()):
        ax.bar(x + (j - (len(bars) - 1) / 2) * w, vals, w, label=mth)
    if r.oracle:
        ax.axhline(r.oracle.recall, color="k", ls="--", lw=1, label="oracle")
    ax.set_xticks(x, names, rotation=15)
    ax.set_ylabel(f"recall@{r.k}")
    ax.set_title(f"Quality by pair ({r.users} users, one known click each)")
    ax.legend(fontsize=8)
    return fig


def spread_chart(r: ExperimentResults, plt: Any) -> Any:
    names = list(r.pairs)
    fig, ax = plt.subplots(figsize=(max(5, 1 + 1.4 * len(names)), 3.5))
    ax.bar(names, [r.pairs[n].spread for n in names], color="tab:purple")
    ax.set_ylabel(f"mean cosine distance of top-{r.k}")
    ax.set_title("Spread of LLM-interest neighbours")
    ax.tick_params(axis="x", rotation=15)
    return fig


def overlap_chart(r: ExperimentResults, plt: Any) -> Any:
    names, m = r.overlap.pairs, np.array(r.overlap.matrix)
    fig, ax = plt.subplots(figsize=(2.5 + 1.1 * len(names), 2 + 1.0 * len(names)))
    im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(im, ax=ax, label="top-5 overlap")
    ax.set_title("Top-5 overlap")
    return fig


def latency_chart(r: ExperimentResults, plt: Any) -> Any:
    lat = pd.DataFrame([asdict(p) for p in r.latency])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for (llm, tp), g in lat.groupby(["llm", "tp"]):
        label = f"{llm}" + (f" tp={tp}" if tp > 1 else "")
        a1.plot(g["batch_size"], g["p50_s"], "o-", label=f"{label} p50")
        a1.plot(g["batch_size"], g["p99_s"], "x--", label=f"{label} p99")
        a2.plot(g["batch_size"], g["profiles_per_s"], "o-", label=label)
    a1.set(xlabel="batch size", ylabel="seconds per profile", title="Latency vs batch size")
    a2.set(xlabel="batch size", ylabel="profiles / s", title="Throughput vs batch size")
    a1.legend(fontsize=7)
    a2.legend(fontsize=7)
    return fig


def latency_tp_chart(r: ExperimentResults, plt: Any) -> Any:
    lat = pd.DataFrame([asdict(p) for p in r.latency])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for llm, g in lat[lat["batch_size"] == lat["batch_size"].max()].groupby("llm"):
        ax.plot(g["tp"], g["p50_s"], "o-", label=llm)
    ax.set(xlabel="tensor_parallel_size", ylabel="p50 seconds per profile",
           title="Latency vs tensor parallelism")
    ax.legend(fontsize=8)
    return fig


def cost_chart(r: ExperimentResults, plt: Any) -> Any:
    fig, ax = plt.subplots(figsize=(6, 4))
    for n, p in r.pairs.items():
        ax.scatter(p.cost_per_1k_usd, p.quality["merged"].recall, s=40)
        ax.annotate(n, (p.cost_per_1k_usd, p.quality["merged"].recall), fontsize=8)
    ax.set(xlabel="USD per 1,000 profiles", ylabel=f"recall@{r.k} of (d)",
           title="Cost vs quality")
    return fig


def pair_rows(r: ExperimentResults) -> list[str]:
    """The main table's rows: one per pair."""
    rows = []
    for n, p in r.pairs.items():
        q = p.quality
        rows.append(
            f"<tr><td>{html.escape(n)}</td>"
            + "".join(f"<td>{q[m].recall:.3f} / {q[m].ndcg:.3f}</td>" for m in METHODS[1:])
            + f"<td>{p.spread:.3f}</td><td>{p.distinct_output_rate:.0%}</td>"
            f"<td>{p.json_valid_rate:.0%}</td><td>{p.topic_survival:.0%}</td>"
            f"<td>{p.status['expanded']}</td>"
            f"<td>{p.latency_p50_s:.2f} / {p.latency_p99_s:.2f}</td>"
            f"<td>{p.profiles_per_s:.2f}</td><td>${p.cost_per_1k_usd:.4f}</td></tr>")
    return rows


def ablation_table(r: ExperimentResults) -> str:
    """The gain of each part, when `--ablation` ran more than one variant per pair."""
    if len(r.ablation) <= len(r.pairs):
        return ""
    e = html.escape
    arows = "".join(
        f"<tr><td>{e(a.llm)} x {e(a.encoder)}</td><td>{e(a.prompt)}</td>"
        f"<td>{'with' if a.catalog_titles else 'without'}</td>"
        f"<td>{a.distinct_output_rate:.0%}</td><td>{a.topic_survival:.0%}</td>"
        + "".join(f"<td>{q.recall:.3f} / {q.ndcg:.3f}</td>"
                  for q in (a.llm_interests, a.interleaved, a.merged)) + "</tr>"
        for a in r.ablation)
    return (f"<h2>Gain per part</h2><p>Each row changes one part: the prompt (plain: "
            f"category and style; detailed: every genre or category and the year), the "
            f"grounding vocabulary (with or without titles and kind names), and (d) as "
            f"(b) and (c) interleaved or blended with popularity. Recall / NDCG@{r.k}.</p>"
            f"<table><tr><th>pair</th><th>prompt</th><th>titles and kinds</th>"
            f"<th>distinct topic sets</th><th>topics surviving</th><th>(c) LLM interests"
            f"</th><th>(d) interleaved</th><th>(d) blended</th></tr>{arows}</table>")


def report_html(r: ExperimentResults, charts: list[str]) -> str:
    e = html.escape
    k = r.k
    rows, parts = pair_rows(r), ablation_table(r)
    pop = r.baseline["popularity"]
    oracle = (f"<p>Oracle (the generator's expected clicks): recall@{k} "
              f"{r.oracle.recall:.3f}, NDCG@{k} {r.oracle.ndcg:.3f}.</p>"
              if r.oracle else "<p>No ground-truth model for this dataset: no oracle.</p>")
    examples = "".join(
        f"<li><b>{e(n)}</b>: " + "; ".join(
            f"{e(', '.join(x['titles']))} &rarr; {e(', '.join(x['topics']))}"
            f" (kept: {e(', '.join(x['kept']))})" for x in p.examples[:3]) + "</li>"
        for n, p in r.pairs.items())
    cohort = ("each with exactly one training click, scored on their clicks in the validation "
              "and test days" if r.cohort == "single" else "each reduced to their first "
              "click, scored on every click after it")
    imgs = "".join(f'<figure><img src="{c}" alt="{c}"><figcaption>{c}</figcaption></figure>'
                   for c in charts)
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>warmstart LLM x encoder experiment</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}
img{{max-width:100%}}</style></head><body>
<h1>LLM x encoder experiment</h1>
<p><b>Dataset:</b> {e(r.dataset)} &mdash; <code>{e(r.data)}</code>; {r.users} users,
{cohort}; created {e(r.created)}; {r.wall_s:.0f} s.</p>
<p>Every figure is on the {r.reported_users} users not used to fit
(d)'s weights. (a) popularity: recall@{k} {pop.recall:.3f}, NDCG@{k}
{pop.ndcg:.3f}.</p>
{oracle}
<table><tr><th>pair</th><th>(b) item neighbours<br>recall / NDCG@{k}</th>
<th>(c) LLM interests</th><th>(d) (a)+(b)+(c) blended</th><th>spread</th>
<th>distinct outputs</th>
<th>JSON valid</th><th>topics surviving</th><th>users expanded</th>
<th>latency p50 / p99 s</th><th>profiles/s</th><th>cost / 1k profiles</th></tr>
{''.join(rows)}</table>
{parts}
<h2>Examples</h2><ul>{examples}</ul>
<h2>Charts</h2>{imgs}
</body></html>
"""
