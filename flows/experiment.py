"""`warmstart experiment`: LLM x encoder pairs compared on users with one known interaction.

For each user whose training days hold exactly one click and whose later days (validation
and test) hold at least one, four ways to fill a top-10 are scored against those later
clicks (the ground truth), beside the oracle where the generator's truth exists. (Datasets
without such users, like MovieLens-100K, use the `first` cohort: every user reduced to their
first click; see `cohort`.)

    (a) popularity        training-day click counts
    (b) item neighbours   nearest catalog items to the one known item (the encoder alone)
    (c) LLM interests     nearest items to the user's interest vector (`flows.expand`)
    (d) (b) + (c)         interleaved, duplicates removed

Per pair it also reports the spread of (c) (mean cosine distance of the top-10 neighbours:
higher is broader), top-5 overlap between pairs, the distinct-output rate (a collapsed model
gives everyone the same topics), the JSON-valid rate before grounding, topic survival, p50/p99
latency per profile and throughput, and cost per 1,000 profiles from `prices` (USD per hour
of the hardware each LLM runs on). The LLM's outputs do not depend on the encoder, so each
LLM generates once and each encoder grounds and embeds its outputs.

Writes `<out>/report.html` with PNG charts and `<out>/results.json`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from flows.generate.world import World
from flows.layout import (
    DATA,
    LOAD_REPORT,
    RUNS,
    TRUTH,
    Split,
    read_interactions,
    read_items,
    read_reviews,
)
from index.faiss_index import build_index, search
from interests.backends import LLMConfig, load_backend
from interests.grounding import GroundingConfig, catalog_vocabulary
from interests.profiles import build_profiles, history
from interests.prompts import build_messages
from interests.stages import run_generate, run_ground, summarize
from train.encoders import EncoderConfig, embed_texts, item_texts, load_encoder
from train.metrics import ndcg_at_k, recall_at_k

log = logging.getLogger(__name__)

METHODS = ("popularity", "item_neighbours", "llm_interests", "merged")
COHORTS = ("auto", "single", "first")  # see `cohort`


@dataclass(frozen=True)
class NamedLLM:
    name: str
    llm: LLMConfig = field(default_factory=LLMConfig)
    hardware: str = "cpu-2core"  # a key of ExperimentConfig.prices
    tensor_parallel_sizes: tuple[int, ...] = ()  # latency sweep over tp (vLLM, >1 device)


@dataclass(frozen=True)
class NamedEncoder:
    name: str
    encoder: EncoderConfig = field(default_factory=EncoderConfig)


# On-demand USD per hour (per GPU for GPU entries, per machine otherwise); override them in
# the grid file with your own prices.
DEFAULT_PRICES = {"cpu-2core": 0.0832, "g6.xlarge-l4": 0.805, "p5-h100-per-gpu": 3.93,
                  "trn1.2xlarge": 1.3438, "inf2.xlarge": 0.7582}


@dataclass(frozen=True)
class ExperimentConfig:
    data: Path = DATA
    out: Path = RUNS / "experiment"
    llms: tuple[NamedLLM, ...] = (NamedLLM("smollm2"),)
    encoders: tuple[NamedEncoder, ...] = (NamedEncoder("minilm"),)
    prices: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    split: Split = field(default_factory=Split)
    max_users: int = 200  # evaluated users (a seeded sample when more qualify)
    cohort: str = "auto"  # "single", "first" or "auto", see `cohort`
    min_users: int = 20  # `auto` takes "single" with at least this many such users
    k: int = 10
    overlap_k: int = 5
    batch_sizes: tuple[int, ...] = (1, 4, 8, 16)  # latency sweep
    latency_prompts: int = 16  # prompts per point of the sweep
    seed: int = 0
    use_ray: bool = True

    def __post_init__(self) -> None:
        if not self.llms or not self.encoders:
            raise ValueError("the grid needs at least one LLM and one encoder")
        names = [m.name for m in self.llms] + [e.name for e in self.encoders]
        if len(set(names)) != len(names):
            raise ValueError(f"LLM and encoder names must be unique, got {names}")
        if self.cohort not in COHORTS:
            raise ValueError(f"cohort must be one of {', '.join(COHORTS)}, got {self.cohort!r}")
        if missing := {m.hardware for m in self.llms} - set(self.prices):
            raise ValueError(f"no price per hour for hardware {sorted(missing)}; add it under "
                             "`prices:` in the grid file")


def load_grid(path: Path, **overrides: Any) -> ExperimentConfig:
    """An ExperimentConfig from YAML:

        llms: [{name: smollm2, hardware: cpu-2core, backend: transformers, model: smollm2}]
        encoders: [{name: minilm, kind: minilm}, {name: t5-base, kind: t5, path: /m/t5}]
        prices: {cpu-2core: 0.0832}
        max_users: 200
    """
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read grid file {path}: {e}") from e
    llms = tuple(NamedLLM(
        name=m.pop("name"), hardware=m.pop("hardware", "cpu-2core"),
        tensor_parallel_sizes=tuple(m.pop("tensor_parallel_sizes", ())),
        llm=LLMConfig(**m)) for m in (dict(x) for x in raw.pop("llms", [{"name": "smollm2"}])))
    encoders = tuple(NamedEncoder(name=e.pop("name"), encoder=EncoderConfig(**e))
                     for e in (dict(x) for x in raw.pop("encoders", [{"name": "minilm"}])))
    prices = DEFAULT_PRICES | raw.pop("prices", {})
    known = {f for f in ExperimentConfig.__dataclass_fields__}
    if unknown := set(raw) - known:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    for key in ("batch_sizes",):
        if key in raw:
            raw[key] = tuple(raw[key])
    return ExperimentConfig(llms=llms, encoders=encoders, prices=prices,
                            **(raw | overrides))


# --- The users and their ground truth -----------------------------------------------------

@dataclass
class Cohort:
    items: pd.DataFrame
    users: list[str]
    known_item: np.ndarray  # (U,) catalog row of each user's single training click
    relevant: list[np.ndarray]  # catalog rows clicked on later days
    popularity: np.ndarray  # (I,) training-day clicks
    profiles: pd.DataFrame
    oracle_top: np.ndarray | None  # (U, k) best rows by the generator's truth
    dataset: str
    mode: str  # "single" or "first", see `cohort`


def cohort(cfg: ExperimentConfig) -> Cohort:
    """The evaluated users, each reduced to one known click, and their later clicks.

    `single`: users whose training days hold exactly one click and whose validation and
    test days hold at least one; the truth is those later clicks. `first`: users with at
    least two clicks anywhere, reduced to their first one; the truth is every click after it
    (MovieLens-100K has no `single` users: each rated at least 20 films). `auto` takes
    `single` when at least `min_users` users qualify.
    """
    items = read_items(cfg.data)
    row = {i: n for n, i in enumerate(items["item_id"].astype(str))}
    cols = ("user_id", "item_id", "ts", "label")
    train = read_interactions(cfg.data, cfg.split.train, cols)
    later = read_interactions(cfg.data, cfg.split.val + cfg.split.test, cols)
    clicks = train[(train["label"] == 1) & train["item_id"].isin(row)]
    later = later[(later["label"] == 1) & later["item_id"].isin(row)]
    n = clicks.groupby("user_id").size()
    single = sorted(set(n.index[n == 1]) & set(later["user_id"]))
    mode = cfg.cohort
    if mode == "auto":
        mode = "single" if len(single) >= cfg.min_users else "first"
    if mode == "single":
        known_clicks, truth = clicks[clicks["user_id"].isin(single)], later
    else:
        every = pd.concat([clicks, later]).sort_values(["user_id", "ts"], kind="stable")
        rank = every.groupby("user_id").cumcount()
        known_clicks, truth = every[rank == 0], every[rank > 0]
    users = sorted(set(known_clicks["user_id"]) & set(truth["user_id"]))
    if not users:
        raise ValueError(f"{cfg.data} has no user with a known click and a later one "
                         f"(cohort {mode!r}); try --cohort first or a larger --scale")
    if len(users) > cfg.max_users:
        rng = np.random.default_rng(cfg.seed)
        users = sorted(rng.choice(users, cfg.max_users, replace=False).tolist())
    known_clicks = known_clicks[known_clicks["user_id"].isin(users)]
    first = known_clicks.set_index("user_id").loc[users, "item_id"]
    known = np.array([row[i] for i in first], dtype=np.int64)
    rel = truth[truth["user_id"].isin(users)].groupby("user_id")["item_id"].agg(
        lambda s: np.unique([row[i] for i in s]))
    relevant = [np.setdiff1d(rel[u], [k]) for u, k in zip(users, known, strict=True)]
    # Popularity from the training days, the evaluated users' own clicks left out.
    others = clicks[~clicks["user_id"].isin(users)]
    pop = np.bincount(others["item_id"].map(row), minlength=len(items)).astype(float)
    profiles = build_profiles(items, known_clicks, users, read_reviews(cfg.data))
    oracle, dataset = _oracle(cfg, items, users, known)
    return Cohort(items, users, known, relevant, pop, profiles, oracle, dataset, mode)


def _oracle(cfg: ExperimentConfig, items: pd.DataFrame, users: list[str], known: np.ndarray,
            ) -> tuple[np.ndarray | None, str]:
    report = cfg.data / LOAD_REPORT
    if report.exists():
        r = json.loads(report.read_text())
        return None, f"{r.get('preset', 'loaded')} ({r.get('format', '')}, {r.get('src', '')})"
    try:
        world = World.load(cfg.data / TRUTH, items)
    except FileNotFoundError:
        return None, f"files in {cfg.data} (no ground-truth model)"
    pos = {u: n for n, u in enumerate(world.user_ids)}
    expected = world.expected_clicks(np.array([pos[u] for u in users]))  # U, I
    expected[np.arange(len(users)), known] = -np.inf
    top = np.argsort(-expected, axis=1)[:, :cfg.k]
    return top, f"synthetic retail world (generator seed {world.seed})"


# --- Retrieval methods --------------------------------------------------------------------

def top_excluding(index: Any, queries: np.ndarray, exclude: np.ndarray, k: int,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(U, k) rows and scores of the nearest items, each user's known item left out."""
    scores, rows = search(index, queries, k + 1)
    keep = rows != exclude[:, None]  # U, k+1
    out_r = np.stack([r[m][:k] for r, m in zip(rows, keep, strict=True)])
    out_s = np.stack([s[m][:k] for s, m in zip(scores, keep, strict=True)])
    return out_r, out_s


def interleave(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """(U, k): a1, b1, a2, b2, ... without repeats."""
    out = np.full((len(a), k), -1, dtype=np.int64)
    for u in range(len(a)):
        seen: list[int] = []
        for x in (v for pair in zip(a[u], b[u], strict=True) for v in pair):
            if x not in seen:
                seen.append(int(x))
            if len(seen) == k:
                break
        out[u, :len(seen)] = seen
    return out


def quality(top: np.ndarray, relevant: list[np.ndarray], k: int) -> dict[str, float]:
    return {"recall": float(np.nanmean(recall_at_k(top, relevant, k))),
            "ndcg": float(np.nanmean(ndcg_at_k(top, relevant, k)))}


# --- Latency ------------------------------------------------------------------------------

def latency_sweep(m: NamedLLM, prompts: list[Any], batch_sizes: tuple[int, ...],
                  ) -> list[dict[str, Any]]:
    """Per-profile latency (the batch's generate time) and throughput at each batch size,
    in this process; for a vLLM entry with `tensor_parallel_sizes`, also per tp degree."""
    points = []
    tps = m.tensor_parallel_sizes or (m.llm.tp,)
    for tp in tps:
        backend = load_backend(replace(m.llm, tensor_parallel_size=tp))
        backend.generate(prompts[:1])  # warm-up: first-call costs are not latency
        for bs in batch_sizes:
            per_profile, total = [], 0.0
            for s in range(0, len(prompts), bs):
                t0 = time.perf_counter()
                backend.generate(prompts[s:s + bs])
                dt_s = time.perf_counter() - t0
                total += dt_s
                per_profile += [dt_s] * len(prompts[s:s + bs])
            points.append({"llm": m.name, "tp": tp, "batch_size": bs,
                           "p50_s": float(np.percentile(per_profile, 50)),
                           "p99_s": float(np.percentile(per_profile, 99)),
                           "profiles_per_s": len(prompts) / total})
        del backend
    return points


# --- The experiment -----------------------------------------------------------------------

def experiment(cfg: ExperimentConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    c = cohort(cfg)
    k = cfg.k
    vocabulary = catalog_vocabulary(c.items, cfg.grounding)
    pop_rank = np.argsort(-c.popularity, kind="stable")
    popular = np.stack([pop_rank[pop_rank != i][:k] for i in c.known_item])  # U, k
    baseline = {"popularity": quality(popular, c.relevant, k)}
    oracle = quality(c.oracle_top, c.relevant, k) if c.oracle_top is not None else None
    log.warning("experiment on %d users of %s", len(c.users), c.dataset)

    generated, llm_runs, latency = {}, {}, []
    prompts = [build_messages(history(r)) for _, r in c.profiles.iterrows()
               if r["n_history"] > 0][:cfg.latency_prompts]
    for m in cfg.llms:
        t1 = time.perf_counter()
        generated[m.name] = run_generate(c.profiles, m.llm, use_ray=cfg.use_ray)
        llm_runs[m.name] = {"wall_s": time.perf_counter() - t1, "label": m.llm.label,
                            "hardware": m.hardware}
        latency += latency_sweep(m, prompts, cfg.batch_sizes)

    texts = item_texts(c.items)
    pairs: dict[str, dict[str, Any]] = {}
    tops: dict[str, np.ndarray] = {}
    for e in cfg.encoders:
        vectors = (embed_texts(texts, e.encoder) if cfg.use_ray
                   else load_encoder(e.encoder).encode(texts))  # I, D
        index = build_index(vectors)
        neighbours, _ = top_excluding(index, vectors[c.known_item], c.known_item, k)
        for m in cfg.llms:
            name = f"{m.name} x {e.name}"
            res = run_ground(generated[m.name], e.encoder, vocabulary, cfg.grounding,
                             cfg.use_ray)
            s = summarize(res)
            # Every cohort user has one known item, so every user has a vector (expanded
            # or fallen back to that item's text).
            q = np.stack([np.asarray(v, np.float32) for v in res["vector"]])  # U, D
            interests, sims = top_excluding(index, q, c.known_item, k)
            merged = interleave(neighbours, interests, k)
            tops[name] = interests
            topic_sets = {tuple(sorted(t)) for t in res.loc[res["n_history"] > 0, "topics"]}
            gen_s = s["generate_s"]
            # GPU prices are per device: a model sharded over tp GPUs pays for all of them.
            price = cfg.prices[m.hardware] * (m.llm.tp if m.llm.accelerator == "gpu" else 1)
            pairs[name] = {
                "llm": m.name, "encoder": e.name, "hardware": m.hardware,
                "quality": {"item_neighbours": quality(neighbours, c.relevant, k),
                            "llm_interests": quality(interests, c.relevant, k),
                            "merged": quality(merged, c.relevant, k)},
                "spread": float(np.mean(1.0 - sims)),
                "distinct_output_rate": len(topic_sets) / max(s["prompted"], 1),
                "json_valid_rate": s["json_valid_rate"],
                "topic_survival": s["topic_survival"],
                "status": s["status"], "drops": s["drops"],
                "latency_p50_s": s["latency_p50_s"], "latency_p99_s": s["latency_p99_s"],
                "profiles_per_s": s["profiles_per_s"],
                "cost_per_1k_usd": price * (1000 / s["profiles_per_s"]) / 3600
                if gen_s > 0 else float("nan"),
                "examples": res.loc[res["n_history"] > 0, ["user_id", "titles", "topics",
                                                          "kept"]].head(5).to_dict("records"),
            }
    names = list(pairs)
    overlap = np.array([[float(np.mean([len(set(tops[a][u, :cfg.overlap_k])
                                            & set(tops[b][u, :cfg.overlap_k])) / cfg.overlap_k
                                        for u in range(len(c.users))])) for b in names]
                        for a in names])
    results = {
        "dataset": c.dataset, "data": str(cfg.data), "users": len(c.users), "k": k,
        "cohort": c.mode,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "baseline": baseline, "oracle": oracle, "pairs": pairs, "llm_runs": llm_runs,
        "overlap": {"pairs": names, "matrix": overlap.tolist()}, "latency": latency,
        "prices": cfg.prices, "wall_s": time.perf_counter() - t0,
    }
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "results.json").write_text(json.dumps(_jsonable(results), indent=1))
    charts = write_charts(results, cfg.out)
    (cfg.out / "report.html").write_text(report_html(results, charts))
    return results


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


# --- Charts and report --------------------------------------------------------------------

CHARTS = ("quality.png", "spread.png", "overlap.png", "latency.png", "cost.png")


def write_charts(r: dict[str, Any], out: Path) -> list[str]:
    """The five PNG charts (plus latency vs tensor_parallel_size when swept); file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(r["pairs"])
    written = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)

    fig, ax = plt.subplots(figsize=(max(6, 2 + 1.6 * len(names)), 4))
    x = np.arange(len(names))
    bars = {"popularity": [r["baseline"]["popularity"]["recall"]] * len(names)}
    for mth in METHODS[1:]:
        bars[mth] = [r["pairs"][n]["quality"][mth]["recall"] for n in names]
    w = 0.8 / len(bars)
    for j, (mth, vals) in enumerate(bars.items()):
        ax.bar(x + (j - (len(bars) - 1) / 2) * w, vals, w, label=mth)
    if r["oracle"]:
        ax.axhline(r["oracle"]["recall"], color="k", ls="--", lw=1, label="oracle")
    ax.set_xticks(x, names, rotation=15)
    ax.set_ylabel(f"recall@{r['k']}")
    ax.set_title(f"Quality by pair ({r['users']} users, one known click each)")
    ax.legend(fontsize=8)
    save(fig, "quality.png")

    fig, ax = plt.subplots(figsize=(max(5, 1 + 1.4 * len(names)), 3.5))
    ax.bar(names, [r["pairs"][n]["spread"] for n in names], color="tab:purple")
    ax.set_ylabel(f"mean cosine distance of top-{r['k']}")
    ax.set_title("Spread of LLM-interest neighbours")
    ax.tick_params(axis="x", rotation=15)
    save(fig, "spread.png")

    m = np.array(r["overlap"]["matrix"])
    fig, ax = plt.subplots(figsize=(2.5 + 1.1 * len(names), 2 + 1.0 * len(names)))
    im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(im, ax=ax, label="top-5 overlap")
    ax.set_title("Top-5 overlap")
    save(fig, "overlap.png")

    lat = pd.DataFrame(r["latency"])
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
    save(fig, "latency.png")

    if lat["tp"].nunique() > 1:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for llm, g in lat[lat["batch_size"] == lat["batch_size"].max()].groupby("llm"):
            ax.plot(g["tp"], g["p50_s"], "o-", label=llm)
        ax.set(xlabel="tensor_parallel_size", ylabel="p50 seconds per profile",
               title="Latency vs tensor parallelism")
        ax.legend(fontsize=8)
        save(fig, "latency_tp.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for n in names:
        p = r["pairs"][n]
        ax.scatter(p["cost_per_1k_usd"], p["quality"]["merged"]["recall"], s=40)
        ax.annotate(n, (p["cost_per_1k_usd"], p["quality"]["merged"]["recall"]), fontsize=8)
    ax.set(xlabel="USD per 1,000 profiles", ylabel=f"recall@{r['k']} of (b)+(c)",
           title="Cost vs quality")
    save(fig, "cost.png")
    return written


def report_html(r: dict[str, Any], charts: list[str]) -> str:
    e = html.escape
    k = r["k"]
    rows = []
    for n, p in r["pairs"].items():
        q = p["quality"]
        rows.append(
            f"<tr><td>{e(n)}</td>"
            + "".join(f"<td>{q[m]['recall']:.3f} / {q[m]['ndcg']:.3f}</td>" for m in METHODS[1:])
            + f"<td>{p['spread']:.3f}</td><td>{p['distinct_output_rate']:.0%}</td>"
            f"<td>{p['json_valid_rate']:.0%}</td><td>{p['topic_survival']:.0%}</td>"
            f"<td>{p['status']['expanded']}</td>"
            f"<td>{p['latency_p50_s']:.2f} / {p['latency_p99_s']:.2f}</td>"
            f"<td>{p['profiles_per_s']:.2f}</td><td>${p['cost_per_1k_usd']:.4f}</td></tr>")
    pop = r["baseline"]["popularity"]
    oracle = (f"<p>Oracle (the generator's expected clicks): recall@{k} "
              f"{r['oracle']['recall']:.3f}, NDCG@{k} {r['oracle']['ndcg']:.3f}.</p>"
              if r["oracle"] else "<p>No ground-truth model for this dataset: no oracle.</p>")
    examples = "".join(
        f"<li><b>{e(n)}</b>: " + "; ".join(
            f"{e(', '.join(x['titles']))} &rarr; {e(', '.join(x['topics']))}"
            f" (kept: {e(', '.join(x['kept']))})" for x in p["examples"][:3]) + "</li>"
        for n, p in r["pairs"].items())
    cohort = ("each with exactly one training click, scored on their clicks in the validation "
              "and test days" if r["cohort"] == "single" else "each reduced to their first "
              "click, scored on every click after it")
    imgs = "".join(f'<figure><img src="{c}" alt="{c}"><figcaption>{c}</figcaption></figure>'
                   for c in charts)
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>warmstart LLM x encoder experiment</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}
img{{max-width:100%}}</style></head><body>
<h1>LLM x encoder experiment</h1>
<p><b>Dataset:</b> {e(r['dataset'])} &mdash; <code>{e(r['data'])}</code>; {r['users']} users,
{cohort}; created {e(r['created'])}; {r['wall_s']:.0f} s.</p>
<p>(a) popularity: recall@{k} {pop['recall']:.3f}, NDCG@{k} {pop['ndcg']:.3f}.</p>
{oracle}
<table><tr><th>pair</th><th>(b) item neighbours<br>recall / NDCG@{k}</th>
<th>(c) LLM interests</th><th>(d) (b)+(c)</th><th>spread</th><th>distinct outputs</th>
<th>JSON valid</th><th>topics surviving</th><th>users expanded</th>
<th>latency p50 / p99 s</th><th>profiles/s</th><th>cost / 1k profiles</th></tr>
{''.join(rows)}</table>
<h2>Examples</h2><ul>{examples}</ul>
<h2>Charts</h2>{imgs}
</body></html>
"""


# --- Command line -------------------------------------------------------------------------

def add_args(p: argparse.ArgumentParser) -> None:
    d = ExperimentConfig()
    p.add_argument("--data", type=Path, default=d.data)
    p.add_argument("--out", type=Path, default=d.out)
    p.add_argument("--grid", type=Path, help="YAML grid of llms, encoders and prices; "
                   "default: SmolLM2 x MiniLM")
    p.add_argument("--max-users", type=int, default=d.max_users)
    p.add_argument("--cohort", choices=COHORTS, default=d.cohort,
                   help="single: users with exactly one training click; first: users reduced "
                        f"to their first click; auto: single when {d.min_users} users qualify")


def config(args: argparse.Namespace) -> ExperimentConfig:
    over = {"data": args.data, "out": args.out, "max_users": args.max_users,
            "cohort": args.cohort}
    return load_grid(args.grid, **over) if args.grid else ExperimentConfig(**over)


def run(args: argparse.Namespace) -> None:
    from flows.runtime import start_ray

    cfg = config(args)
    read_items(cfg.data)  # a missing dataset fails before Ray starts
    with start_ray():
        r = experiment(cfg)
    print(f"{r['users']} users ({r['cohort']} cohort) of {r['dataset']}: popularity "
          f"recall@{r['k']} {r['baseline']['popularity']['recall']:.3f}"
          + (f", oracle {r['oracle']['recall']:.3f}" if r["oracle"] else ""))
    for n, p in r["pairs"].items():
        q = p["quality"]
        print(f"  {n}: neighbours {q['item_neighbours']['recall']:.3f}, LLM "
              f"{q['llm_interests']['recall']:.3f}, merged {q['merged']['recall']:.3f}; "
              f"JSON valid {p['json_valid_rate']:.0%}, {p['profiles_per_s']:.2f} profiles/s")
    print(f"report: {cfg.out / 'report.html'}")


if __name__ == "__main__":
    from flows.cli import run_module

    run_module("experiment")
