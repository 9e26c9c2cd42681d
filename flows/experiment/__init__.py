"""`warmstart experiment`: LLM x encoder pairs compared on users with one known interaction.

For each user whose training days hold exactly one click and whose later days (validation
and test) hold at least one, four ways to fill a top-10 are scored against those later
clicks (the ground truth), beside the oracle where the generator's truth exists. (Datasets
without such users, like MovieLens-100K, use the `first` cohort: every user reduced to their
first click; see `cohort`.)

    (a) popularity        training-day click counts
    (b) item neighbours   nearest catalog items to the one known item (the encoder alone)
    (c) LLM interests     nearest items to the user's interest vector (interests/stages.py)
    (d) merged            (a), (b) and (c) blended with weights fitted on half the users and
                          reported on the other half (every figure is on that half); (b)
                          and (c) plainly interleaved are reported beside it

With `--ablation` the LLM also runs with the plain prompt (category and style only) beside
the detailed one (every genre or category and the year), and grounding runs with and
without titles and kind names in the catalog vocabulary: the report gives (c) and (d) for
each, so each part's gain is read off one run.

Per pair it also reports the spread of (c) (mean cosine distance of the top-10 neighbours:
higher is broader), top-5 overlap between pairs, the distinct-output rate (a collapsed model
gives everyone the same topics), the JSON-valid rate before grounding, topic survival, p50/p99
latency per profile and throughput, and cost per 1,000 profiles from `prices` (USD per hour
of the hardware each LLM runs on). The LLM's outputs do not depend on the encoder, so each
LLM generates once and each encoder grounds and embeds its outputs.

Writes `<out>/report.html` with PNG charts and `<out>/results.json`. The package: config.py
(the grid), cohort.py (the users and their truth), methods.py (the top-k fillers, metrics,
latency), report.py (charts and HTML); this module runs them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, replace
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flows.experiment.cohort import Cohort, cohort
from flows.experiment.config import COHORTS, ExperimentConfig, NamedEncoder, NamedLLM, load_grid
from flows.experiment.methods import (
    MERGED_SIGNALS,
    interleave,
    latency_sweep,
    merged,
    quality,
    top_excluding,
)
from flows.experiment.report import report_html, write_charts
from flows.experiment.results import (
    ExperimentResults,
    LatencyPoint,
    Overlap,
    PairRow,
    Quality,
    Variant,
)
from flows.layout import read_items
from index.faiss_index import build_index
from interests.grounding import catalog_vocabulary
from interests.profiles import history
from interests.prompts import PROMPTS, PromptConfig, build_messages
from interests.stages import run_generate, run_ground, summarize
from train.encoders import embed_texts, item_texts, load_encoder
from train.storage import location

log = logging.getLogger(__name__)


def experiment(cfg: ExperimentConfig) -> ExperimentResults:
    """Run the grid on the cohort; writes results.json, the charts and report.html."""
    t0 = time.perf_counter()
    c = cohort(cfg)  # 1
    # Half the users fit (d)'s weights, the other half is reported: every figure below is on
    # the reported half, so no method is scored on the users it was fitted on.
    fit = np.random.default_rng(cfg.seed).random(len(c.users)) < 0.5  # 2
    log.warning("experiment on %d users of %s (%d reported)", len(c.users), c.dataset,
                int((~fit).sum()))
    generated, llm_runs, latency = generate(c, cfg)  # 3
    variants, pairs, tops = ground_and_score(c, cfg, generated, fit)  # 4
    pop_rank = np.argsort(-c.popularity, kind="stable")
    popular = np.stack([pop_rank[pop_rank != i][:cfg.k] for i in c.known_item])  # U, k
    results = ExperimentResults(  # 5
        dataset=c.dataset, data=str(cfg.data), users=len(c.users),
        reported_users=int((~fit).sum()), k=cfg.k, cohort=c.mode,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        baseline={"popularity": quality(popular, c.relevant, cfg.k, ~fit)},
        oracle=(quality(c.oracle_top, c.relevant, cfg.k, ~fit) if c.oracle_top is not None
                else None),
        pairs=pairs, ablation=variants, llm_runs=llm_runs,
        overlap=overlap(tops, len(c.users), cfg.overlap_k), latency=latency,
        prices=dict(cfg.prices), wall_s=time.perf_counter() - t0)
    write(results, cfg.out)  # 6
    return results


def generate(c: Cohort, cfg: ExperimentConfig
             ) -> tuple[dict[tuple[str, str], pd.DataFrame], dict[str, dict[str, Any]],
                        list[LatencyPoint]]:
    """3. Each LLM's outputs once per prompt style (they do not depend on the encoder), the
    wall time of each run, and each LLM's latency sweep."""
    generated, runs, latency = {}, {}, []
    prompts = [build_messages(history(r)) for _, r in c.profiles.iterrows()
               if r["n_history"] > 0][:cfg.latency_prompts]
    for m in cfg.llms:
        for style in cfg.prompt_styles:
            t1 = time.perf_counter()
            generated[m.name, style] = run_generate(c.profiles, m.llm, PromptConfig(style=style),
                                                    use_ray=cfg.use_ray)
            runs[f"{m.name} ({style} prompt)"] = {
                "wall_s": time.perf_counter() - t1, "label": m.llm.label, "hardware": m.hardware}
        latency += latency_sweep(m, prompts, cfg.batch_sizes)
    return generated, runs, latency


@dataclass(frozen=True)
class Catalog:
    """The catalog in one encoder's space, and (b): each user's known item's neighbours."""

    vectors: np.ndarray  # (I, D)
    index: Any
    neighbours: np.ndarray  # (U, k)


def ground_and_score(c: Cohort, cfg: ExperimentConfig,
                     generated: dict[tuple[str, str], pd.DataFrame], fit: np.ndarray
                     ) -> tuple[list[Variant], dict[str, PairRow], dict[str, np.ndarray]]:
    """4. Every encoder grounds and embeds every LLM's outputs, in every variant (prompt
    style x grounding vocabulary): each variant's row, each pair's row (its main variant,
    the last of each), and each pair's (c) lists for the overlap."""
    vocabularies = {t: catalog_vocabulary(c.items, replace(cfg.grounding, titles_and_kinds=t))
                    for t in cfg.grounding_titles}
    texts = item_texts(c.items)
    main = (cfg.prompt_styles[-1], cfg.grounding_titles[-1])
    variants, pairs, tops = [], {}, {}
    for e in cfg.encoders:
        catalog = embed_catalog(c, cfg, e, texts)
        for m, (style, titles) in product(cfg.llms, product(cfg.prompt_styles,
                                                            cfg.grounding_titles)):
            res = run_ground(generated[m.name, style], e.encoder, vocabularies[titles],
                             replace(cfg.grounding, titles_and_kinds=titles), cfg.use_ray)
            variant, interests, sims = score_variant(c, cfg, catalog, res, fit, m, e, style,
                                                     titles)
            variants.append(variant)
            if (style, titles) == main:
                name = f"{m.name} x {e.name}"
                tops[name] = interests
                pairs[name] = pair_row(variant, res, m, cfg, quality(
                    catalog.neighbours, c.relevant, cfg.k, ~fit), sims)
    return variants, pairs, tops


def embed_catalog(c: Cohort, cfg: ExperimentConfig, e: NamedEncoder, texts: list[str]
                  ) -> Catalog:
    vectors = (embed_texts(texts, e.encoder) if cfg.use_ray
               else load_encoder(e.encoder).encode(texts))  # I, D
    index = build_index(vectors)
    neighbours, _ = top_excluding(index, vectors[c.known_item], c.known_item, cfg.k)
    return Catalog(vectors, index, neighbours)


def score_variant(c: Cohort, cfg: ExperimentConfig, catalog: Catalog, res: pd.DataFrame,
                  fit: np.ndarray, m: NamedLLM, e: NamedEncoder, style: str, titles: bool
                  ) -> tuple[Variant, np.ndarray, np.ndarray]:
    """(c), (d) and (b)+(c) interleaved of one variant; its (c) lists and their scores."""
    # Every cohort user has one known item, so every user has a vector (expanded or fallen
    # back to that item's text).
    q = np.stack([np.asarray(v, np.float32) for v in res["vector"]])  # U, D
    interests, sims = top_excluding(catalog.index, q, c.known_item, cfg.k)
    blended, weights = merged(catalog.vectors, c.known_item, q, c.popularity, c.relevant, fit,
                              cfg.k, seed=cfg.seed)
    topic_sets = {tuple(sorted(t)) for t in res.loc[res["n_history"] > 0, "topics"]}
    s = summarize(res)
    variant = Variant(
        llm=m.name, encoder=e.name, prompt=style, catalog_titles=titles,
        llm_interests=quality(interests, c.relevant, cfg.k, ~fit),
        interleaved=quality(interleave(catalog.neighbours, interests, cfg.k), c.relevant,
                            cfg.k, ~fit),
        merged=quality(blended, c.relevant, cfg.k, ~fit),
        merged_weights=None if weights is None else dict(zip(MERGED_SIGNALS, weights.weights,
                                                             strict=True)),
        merged_chosen=None if weights is None else weights.chosen,
        distinct_output_rate=len(topic_sets) / max(s["prompted"], 1),
        topic_survival=s["topic_survival"])
    return variant, interests, sims


def pair_row(v: Variant, res: pd.DataFrame, m: NamedLLM, cfg: ExperimentConfig,
             neighbours: Quality, sims: np.ndarray) -> PairRow:
    """A pair's row: its main variant's quality beside the LLM's validity, speed and cost."""
    s = summarize(res)
    # GPU prices are per device: a model sharded over tp GPUs pays for all.
    price = cfg.prices[m.hardware] * (m.llm.tp if m.llm.accelerator == "gpu" else 1)
    return PairRow(
        llm=v.llm, encoder=v.encoder, hardware=m.hardware, prompt=v.prompt,
        catalog_titles=v.catalog_titles,
        quality={"item_neighbours": neighbours, "llm_interests": v.llm_interests,
                 "merged": v.merged, "interleaved": v.interleaved},
        merged_weights=v.merged_weights, merged_chosen=v.merged_chosen,
        spread=float(np.mean(1.0 - sims)), distinct_output_rate=v.distinct_output_rate,
        json_valid_rate=s["json_valid_rate"], topic_survival=s["topic_survival"],
        status=s["status"], drops=s["drops"], latency_p50_s=s["latency_p50_s"],
        latency_p99_s=s["latency_p99_s"], profiles_per_s=s["profiles_per_s"],
        cost_per_1k_usd=(price * (1000 / s["profiles_per_s"]) / 3600
                         if s["generate_s"] > 0 else float("nan")),
        examples=res.loc[res["n_history"] > 0, ["user_id", "titles", "topics", "kept"]
                         ].head(5).to_dict("records"))


def overlap(tops: dict[str, np.ndarray], n_users: int, k: int) -> Overlap:
    """The mean share of their top `k` that two pairs' (c) lists have in common."""
    names = list(tops)
    return Overlap(pairs=names, matrix=[[float(np.mean([
        len(set(tops[a][u, :k]) & set(tops[b][u, :k])) / k for u in range(n_users)]))
        for b in names] for a in names])


def write(results: ExperimentResults, out: Path) -> None:
    """6. results.json, the charts and report.html in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results.to_dict(), indent=1))
    charts = write_charts(results, out)
    (out / "report.html").write_text(report_html(results, charts))


# --- Command line -------------------------------------------------------------------------

# A URI location is mirrored locally for the run, and uploaded after when written
# (train/storage.py).
LOCATIONS = {"data": "read", "out": "write"}


def add_args(p: argparse.ArgumentParser) -> None:
    d = ExperimentConfig()
    p.add_argument("--data", type=location, default=d.data)
    p.add_argument("--out", type=location, default=d.out)
    p.add_argument("--grid", type=Path, help="YAML grid of llms, encoders and prices; "
                   "default: SmolLM2 x MiniLM")
    p.add_argument("--max-users", type=int, default=d.max_users)
    p.add_argument("--cohort", choices=COHORTS, default=d.cohort,
                   help="single: users with exactly one training click; first: users reduced "
                        f"to their first click; auto: single when {d.min_users} users qualify")
    p.add_argument("--ablation", action="store_true",
                   help="also run the plain prompt and grounding without titles and kind "
                        "names, and report what each part gains (the LLM runs twice)")


def config(args: argparse.Namespace) -> ExperimentConfig:
    over: dict[str, Any] = {"data": args.data, "out": args.out, "max_users": args.max_users,
                            "cohort": args.cohort}
    if args.ablation:
        over |= {"prompt_styles": PROMPTS, "grounding_titles": (False, True)}
    return load_grid(args.grid, **over) if args.grid else ExperimentConfig(**over)


def run(args: argparse.Namespace) -> None:
    from flows.runtime import start_ray

    cfg = config(args)
    read_items(cfg.data)  # a missing dataset fails before Ray starts
    with start_ray():
        r = experiment(cfg)
    pop = r.baseline["popularity"]
    print(f"{r.users} users ({r.cohort} cohort) of {r.dataset}, {r.reported_users} reported: "
          f"(a) popularity recall@{r.k} {pop.recall:.3f}"
          + (f", oracle {r.oracle.recall:.3f}" if r.oracle else ""))
    for n, p in r.pairs.items():
        q = p.quality
        print(f"  {n}: (b) neighbours {q['item_neighbours'].recall:.3f}, (c) LLM "
              f"{q['llm_interests'].recall:.3f}, (d) merged {q['merged'].recall:.3f} "
              f"(interleaved {q['interleaved'].recall:.3f}); JSON valid "
              f"{p.json_valid_rate:.0%}, {p.profiles_per_s:.2f} profiles/s")
    if len(r.ablation) > len(r.pairs):
        print("  by part (recall@k of (c) and (d) on the reported users):")
        for a in r.ablation:
            print(f"    {a.llm} x {a.encoder}, {a.prompt} prompt, grounding "
                  f"{'with' if a.catalog_titles else 'without'} titles and kinds: (c) "
                  f"{a.llm_interests.recall:.3f}, (d) interleaved {a.interleaved.recall:.3f}, "
                  f"blended {a.merged.recall:.3f}; {a.distinct_output_rate:.0%} distinct "
                  "topic sets")
    print(f"report: {cfg.out / 'report.html'}")
