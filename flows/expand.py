"""`warmstart expand`: LLM interest expansion for users with sparse histories, on Ray Data.

    profiles (a user's latest items: title, category, style, review)
      -> prompt -> LLM actors (JSON-constrained)           stage 1, `GenerateTopics`
      -> parse, clean, ground -> encoder -> interest vector stage 2, `GroundAndEmbed`
      -> <out>/interests.parquet, items.parquet, stats.json

Every input user appears in the output with a `status`:

    expanded            topics survived grounding; the vector is their mean embedding
    fallback_no_topics  the LLM answered, nothing survived; vector from the user's own items
    fallback_llm_error  the LLM raised on the user's batch; vector from the user's own items
    fallback_timeout    the batch hit `timeout_s` before the JSON closed; same fallback
    no_history          nothing to prompt with (no interactions, or only unknown item ids);
                        no vector: serving treats the user as any cold user

`items.parquet` holds the catalog's vectors from the same encoder (a Ray Data job), so the
interest vectors can be searched against it; serving reads both from `<artifacts>/interests/`.

Both stages are plain functions on pandas batches (`generate_batch`, `ground_batch`), tested
without Ray; the Ray Data classes only hold the loaded model between batches.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flows.data import Split, read_interactions, read_items, read_users
from flows.llm import HistoryItem, LLMBackend, LLMConfig, build_messages, load_backend
from flows.load import read_reviews
from flows.topics import (
    DROP_REASONS,
    Grounder,
    GroundingConfig,
    catalog_vocabulary,
    clean_topics,
    interest_vector,
    parse_topics,
)
from train.encoders import EncoderConfig, embed_texts, item_texts, load_encoder

log = logging.getLogger(__name__)

STATUSES = ("expanded", "fallback_no_topics", "fallback_llm_error", "fallback_timeout",
            "no_history")


@dataclass(frozen=True)
class ExpandConfig:
    data: Path = Path("data")
    out: Path = Path("artifacts") / "interests"
    llm: LLMConfig = field(default_factory=LLMConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    days: tuple[int, ...] = Split().train  # whose interactions make the histories
    users: str = "sparse"  # "sparse": at most `max_history` clicks in `days`; "all"
    max_history: int = 3
    user_ids: tuple[str, ...] | None = None  # exactly these users (overrides `users`)
    limit: int | None = None  # the first N selected users, for trials
    max_items: int = 5  # newest items shown in a prompt
    use_ray: bool = True  # False: both stages in this process (tests, overhead benchmark)

    def __post_init__(self) -> None:
        if self.users not in ("sparse", "all"):
            raise ValueError(f"users must be 'sparse' or 'all', got {self.users!r}")
        if self.max_history < 1 or self.max_items < 1:
            raise ValueError("max_history and max_items must be >= 1")


# --- Profiles -----------------------------------------------------------------------------

PROFILE_COLUMNS = ("user_id", "titles", "categories", "styles", "reviews", "texts",
                   "n_history", "n_unknown")


def build_profiles(items: pd.DataFrame, clicks: pd.DataFrame, user_ids: list[str],
                   reviews: pd.DataFrame | None = None, max_items: int = 5) -> pd.DataFrame:
    """One row per user in `user_ids` (in that order), with their latest `max_items` clicked
    items as parallel lists. Clicks on item ids missing from `items` are counted in
    `n_unknown` and left out; a user with nothing left has empty lists.

    `clicks`: user_id, item_id, ts (positives only). `reviews`: user_id, item_id, text
    (optional), joined to the clicks they belong to.
    """
    cat = items.set_index(items["item_id"].astype(str))
    known = clicks["item_id"].isin(cat.index)
    n_unknown = clicks.loc[~known].groupby("user_id").size()
    c = clicks.loc[known].sort_values(["user_id", "ts"], kind="stable")
    c = c.groupby("user_id", sort=False).tail(max_items)
    review = {}
    if reviews is not None and len(reviews):
        r = reviews.dropna(subset=["text"])
        review = dict(zip(zip(r["user_id"].astype(str), r["item_id"].astype(str), strict=True),
                          r["text"].astype(str), strict=True))
    texts = pd.Series(item_texts(cat), index=cat.index)
    rows = {u: {"titles": [], "categories": [], "styles": [], "reviews": [], "texts": []}
            for u in user_ids}
    for u, i in zip(c["user_id"].to_numpy(), c["item_id"].to_numpy(), strict=True):
        if u not in rows:
            continue
        it = cat.loc[i]
        r = rows[u]
        r["titles"].append(str(it.get("name", i)))
        r["categories"].append(str(it.get("category", "")))
        r["styles"].append(str(it.get("style", "")))
        r["reviews"].append(review.get((u, i), ""))
        r["texts"].append(str(texts[i]))
    out = pd.DataFrame([{"user_id": u, **r} for u, r in rows.items()],
                       columns=list(PROFILE_COLUMNS[:6]))
    out["n_history"] = out["titles"].map(len).astype(np.int64)
    out["n_unknown"] = out["user_id"].map(n_unknown).fillna(0).astype(np.int64)
    return out


def history(row: Any) -> list[HistoryItem]:
    return [HistoryItem(t, c, s, r) for t, c, s, r in
            zip(row["titles"], row["categories"], row["styles"], row["reviews"], strict=True)]


def select_users(data: Path, cfg: ExpandConfig, clicks: pd.DataFrame) -> list[str]:
    """The users to expand: listed ones, or every user with at most `max_history` clicks."""
    if cfg.user_ids is not None:
        chosen = list(cfg.user_ids)
    else:
        users = read_users(data).index.astype(str)
        n = clicks.groupby("user_id").size().reindex(users, fill_value=0)
        chosen = list(users if cfg.users == "all" else n.index[n <= cfg.max_history])
    return chosen[:cfg.limit] if cfg.limit else chosen


def load_profiles(cfg: ExpandConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(items, profiles) for the configured users."""
    items = read_items(cfg.data)
    inter = read_interactions(cfg.data, cfg.days, ("user_id", "item_id", "ts", "label"))
    clicks = inter.loc[inter["label"] == 1, ["user_id", "item_id", "ts"]]
    users = select_users(cfg.data, cfg, clicks)
    return items, build_profiles(items, clicks, users, read_reviews(cfg.data), cfg.max_items)


# --- Stage 1: the LLM ---------------------------------------------------------------------

def generate_batch(batch: pd.DataFrame, backend: LLMBackend, llm: LLMConfig,
                   max_items: int = 5) -> pd.DataFrame:
    """Adds llm_text, llm_error ("" / "error: ..." / "timeout"), llm_seconds (the wall time
    of the batch's generate call, which every profile in it waited for) and llm_batch (how
    many profiles shared that call)."""
    out = batch.copy()
    out["llm_text"], out["llm_error"], out["llm_seconds"], out["llm_batch"] = "", "", 0.0, 0
    todo = np.flatnonzero(out["n_history"].to_numpy() > 0)
    if not len(todo):
        return out
    prompts = [build_messages(history(out.iloc[i]), max_items) for i in todo]
    t0 = time.perf_counter()
    try:
        texts = backend.generate(prompts)
        if len(texts) != len(prompts):
            raise RuntimeError(f"backend returned {len(texts)} outputs for {len(prompts)}")
        error = ""
    except Exception as e:  # any backend failure: counted per user, the job goes on
        log.warning("LLM batch of %d failed: %s", len(prompts), e)
        texts, error = [""] * len(prompts), f"error: {type(e).__name__}: {e}"[:300]
    seconds = time.perf_counter() - t0
    timed_out = not error and seconds >= llm.timeout_s
    col = out.columns.get_loc
    for i, text in zip(todo, texts, strict=True):
        out.iat[i, col("llm_text")] = text
        out.iat[i, col("llm_seconds")] = seconds
        out.iat[i, col("llm_batch")] = len(todo)
        if error:
            out.iat[i, col("llm_error")] = error
        elif timed_out and not parse_topics(text)[1]:
            out.iat[i, col("llm_error")] = "timeout"
    return out


class GenerateTopics:
    """Ray Data stage 1: each actor loads the LLM once (`load_backend`)."""

    def __init__(self, llm: LLMConfig, max_items: int) -> None:
        self.llm, self.max_items = llm, max_items
        self.backend = load_backend(llm)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return generate_batch(batch, self.backend, self.llm, self.max_items)


# --- Stage 2: validation, grounding, vectors ----------------------------------------------

def ground_batch(batch: pd.DataFrame, grounder: Grounder) -> pd.DataFrame:
    """Adds status, json_valid, topics (cleaned), kept (grounded), terms, drops (JSON of
    reason -> count), n_raw and vector (None for no_history)."""
    rows = []
    for r in batch.to_dict("records"):
        raw, valid, drops = parse_topics(r["llm_text"]) if r["llm_text"] else ([], False, {})
        drops = Counter(drops)
        topics, cleaned = clean_topics(raw)
        drops.update(cleaned)
        kept, terms, vecs, n_ungrounded = grounder.ground(topics)
        if n_ungrounded:
            drops["ungrounded"] += n_ungrounded
        vector: np.ndarray | None = None
        if r["n_history"] == 0:
            status = "no_history"
        elif kept:
            status, vector = "expanded", interest_vector(vecs)
        else:
            err = str(r["llm_error"])
            status = ("fallback_timeout" if err == "timeout" else
                      "fallback_llm_error" if err else "fallback_no_topics")
            vector = interest_vector(grounder.encoder.encode(list(r["texts"])))
        rows.append({"status": status, "json_valid": bool(valid), "n_raw": len(raw),
                     "topics": topics, "kept": kept, "terms": terms,
                     "drops": json.dumps(dict(drops), sort_keys=True),
                     "vector": None if vector is None else vector.tolist()})
    extra = pd.DataFrame(rows, index=batch.index)
    return pd.concat([batch, extra], axis=1)


class GroundAndEmbed:
    """Ray Data stage 2: each actor loads the encoder and embeds the vocabulary once."""

    def __init__(self, encoder: EncoderConfig, vocabulary: list[str],
                 grounding: GroundingConfig) -> None:
        self.grounder = Grounder(load_encoder(encoder), vocabulary, grounding)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return ground_batch(batch, self.grounder)


# --- Running the stages -------------------------------------------------------------------

def run_generate(profiles: pd.DataFrame, llm: LLMConfig, max_items: int = 5,
                 use_ray: bool = True) -> pd.DataFrame:
    """Stage 1 over all profiles, in profile order: on Ray Data actors, or in this process."""
    if not use_ray:
        backend = load_backend(llm)
        parts = [generate_batch(profiles.iloc[s:s + llm.batch_size], backend, llm, max_items)
                 for s in range(0, len(profiles), llm.batch_size)]
        return pd.concat(parts)
    import ray.data

    _prepare(llm)
    ds = _blocks(profiles, llm.batch_size)
    ds = ds.map_batches(GenerateTopics, fn_constructor_kwargs={"llm": llm,
                                                               "max_items": max_items},
                        compute=ray.data.ActorPoolStrategy(size=llm.concurrency),
                        batch_size=llm.batch_size, batch_format="pandas",
                        max_restarts=0,  # as in embed_texts (ray#53727)
                        **llm.ray_resources())
    return _ordered(ds)


def run_ground(generated: pd.DataFrame, encoder: EncoderConfig, vocabulary: list[str],
               grounding: GroundingConfig, use_ray: bool = True) -> pd.DataFrame:
    """Stage 2 over stage 1's rows, in their order."""
    if not use_ray:
        grounder = Grounder(load_encoder(encoder), vocabulary, grounding)
        return ground_batch(generated, grounder)
    import ray.data

    ds = _blocks(generated, encoder.batch_size)
    ds = ds.map_batches(GroundAndEmbed, fn_constructor_kwargs={
                            "encoder": encoder, "vocabulary": vocabulary,
                            "grounding": grounding},
                        compute=ray.data.ActorPoolStrategy(size=1), num_cpus=encoder.num_cpus,
                        batch_size=encoder.batch_size, batch_format="pandas",
                        max_restarts=0)
    return _ordered(ds)


def _blocks(df: pd.DataFrame, rows: int) -> Any:
    """A Ray Dataset of `df` in blocks of `rows`, each row tagged with its position so the
    result can be put back in input order whatever order blocks finish in."""
    import ray.data

    df = df.drop(columns=["_row"], errors="ignore").assign(_row=np.arange(len(df)))
    return ray.data.from_pandas([df.iloc[s:s + rows] for s in range(0, max(len(df), 1), rows)])


def _ordered(ds: Any) -> pd.DataFrame:
    df = ds.to_pandas()
    return df.sort_values("_row", kind="stable").drop(columns="_row").reset_index(drop=True)


def _prepare(llm: LLMConfig) -> None:
    """Check the model path and convert a GGUF file once in the driver, so a typo fails
    before any actor starts and actors never race to convert."""
    from flows.llm import model_folder

    model_folder(llm)


def summarize(result: pd.DataFrame, wall_s: float | None = None) -> dict[str, Any]:
    """Counts for stats.json and the experiment: statuses, drops by reason, rates."""
    prompted = result["n_history"] > 0
    drops: Counter[str] = Counter()
    for d in result["drops"]:
        drops.update(json.loads(d))
    n_raw = int(result.loc[prompted, "n_raw"].sum())
    n_kept = int(result["kept"].map(len).sum())
    seconds = result.loc[prompted, "llm_seconds"].to_numpy(float)
    # Generation time proper (model loading excluded): each batch's time counted once.
    gen_s = float((seconds / result.loc[prompted, "llm_batch"].to_numpy(float)).sum())
    return {
        "users": len(result),
        "status": {s: int((result["status"] == s).sum()) for s in STATUSES},
        "prompted": int(prompted.sum()),
        "json_valid_rate": float(result.loc[prompted, "json_valid"].mean()) if prompted.any()
        else float("nan"),
        "topics_raw": n_raw,
        "topics_kept": n_kept,
        "topic_survival": n_kept / n_raw if n_raw else float("nan"),
        "drops": {r: int(drops.get(r, 0)) for r in DROP_REASONS},
        "unknown_items": int(result["n_unknown"].sum()),
        "latency_p50_s": float(np.percentile(seconds, 50)) if len(seconds) else float("nan"),
        "latency_p99_s": float(np.percentile(seconds, 99)) if len(seconds) else float("nan"),
        "generate_s": gen_s,
        "profiles_per_s": int(prompted.sum()) / gen_s if gen_s > 0 else float("nan"),
        "wall_s": wall_s,
    }


def expand(cfg: ExpandConfig) -> dict[str, Any]:
    """Expand the configured users and write `cfg.out`; returns the stats also saved there."""
    t0 = time.perf_counter()
    items, profiles = load_profiles(cfg)
    if profiles.empty:
        raise ValueError(f"no users selected from {cfg.data}; check --users/--max-history "
                         "or pass --user-ids")
    vocabulary = catalog_vocabulary(items, cfg.grounding.min_items, cfg.grounding.max_terms)
    t1 = time.perf_counter()
    generated = run_generate(profiles, cfg.llm, cfg.max_items, cfg.use_ray)
    llm_s = time.perf_counter() - t1
    result = run_ground(generated, cfg.encoder, vocabulary, cfg.grounding, cfg.use_ray)
    texts = item_texts(items)
    vectors = (embed_texts(texts, cfg.encoder) if cfg.use_ray
               else load_encoder(cfg.encoder).encode(texts))  # I, D
    stats = summarize(result, time.perf_counter() - t0)
    stats |= {"llm": cfg.llm.label, "encoder": _encoder_meta(cfg.encoder, vectors.shape[1]),
              "llm_wall_s": llm_s,  # with model loading and Ray start-up
              "vocabulary": len(vocabulary), "data": str(cfg.data)}
    write_interests(cfg.out, result, items["item_id"].astype(str).tolist(), vectors, stats)
    return stats


def _encoder_meta(enc: EncoderConfig, dim: int) -> dict[str, Any]:
    return {"kind": enc.kind, "path": enc.path, "max_length": enc.max_length, "dim": dim}


OUTPUT_COLUMNS = ("user_id", "status", "n_history", "n_unknown", "llm_text", "llm_error",
                  "json_valid", "topics", "kept", "terms", "drops", "llm_seconds", "llm_batch",
                  "vector")


def write_interests(out: Path, result: pd.DataFrame, item_ids: list[str], vectors: np.ndarray,
                    stats: dict[str, Any]) -> None:
    """interests.parquet, items.parquet and stats.json, swapped in as one folder so serving
    never reads a mix of two runs."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    dim = vectors.shape[1]
    # Without pandas metadata: after Ray Data, list columns carry pyarrow-backed dtypes that
    # pandas cannot read back from that metadata.
    table = pa.Table.from_pandas(result[list(OUTPUT_COLUMNS[:-1])],
                                 preserve_index=False).replace_schema_metadata(None)
    # After a trip through Ray Data (Arrow) a missing vector may come back as pd.NA.
    vec = pa.array([np.asarray(v, np.float32) if isinstance(v, list | np.ndarray) else None
                    for v in result["vector"]], pa.list_(pa.float32(), dim))
    pq.write_table(table.append_column("vector", vec), tmp / "interests.parquet")
    pq.write_table(pa.table({"item_id": pa.array(item_ids, pa.string()),
                             "vector": pa.FixedSizeListArray.from_arrays(
                                 vectors.astype(np.float32).ravel(), dim)}),
                   tmp / "items.parquet")
    (tmp / "stats.json").write_text(json.dumps(stats, indent=1, default=str))
    old = out.with_name(out.name + ".old")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


# --- Command line -------------------------------------------------------------------------

def add_llm_args(p: argparse.ArgumentParser) -> None:
    d = LLMConfig()
    p.add_argument("--llm-backend", choices=["transformers", "vllm"], default=d.backend)
    p.add_argument("--llm-model", default=d.model, help="smollm2, llama-3.2-1b, llama-3.2-3b, "
                   "llama-3.1-8b, llama-3.3-70b, or custom (with --llm-path)")
    p.add_argument("--llm-path", help="local HF folder or .gguf file (never downloaded)")
    p.add_argument("--accelerator", choices=["cpu", "gpu", "neuron"], default=d.accelerator)
    p.add_argument("--tensor-parallel-size", type=int, help="default: the model preset's")
    p.add_argument("--llm-batch-size", type=int, default=d.batch_size)
    p.add_argument("--llm-timeout", type=float, default=d.timeout_s,
                   help="seconds per batch before its users fall back")


def llm_config(args: argparse.Namespace) -> LLMConfig:
    return LLMConfig(backend=args.llm_backend, model=args.llm_model, path=args.llm_path,
                     accelerator=args.accelerator,
                     tensor_parallel_size=args.tensor_parallel_size,
                     batch_size=args.llm_batch_size, timeout_s=args.llm_timeout)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=Path("data"))
    p.add_argument("--out", type=Path, default=Path("artifacts") / "interests",
                   help="output folder; serving reads <artifacts>/interests")
    add_llm_args(p)
    p.add_argument("--encoder", choices=["minilm", "sentence-transformers", "t5"],
                   default="minilm")
    p.add_argument("--encoder-path", help="local encoder folder (t5, sentence-transformers)")
    p.add_argument("--threshold", type=float, default=GroundingConfig.threshold,
                   help="cosine similarity a topic needs to its nearest catalog term")
    p.add_argument("--users", choices=["sparse", "all"], default="sparse")
    p.add_argument("--max-history", type=int, default=3,
                   help="'sparse' users have at most this many clicks")
    p.add_argument("--user-ids", nargs="+", help="expand exactly these users")
    p.add_argument("--limit", type=int, help="only the first N selected users")


def run(args: argparse.Namespace) -> None:
    from flows.runtime import start_ray

    cfg = ExpandConfig(
        data=args.data, out=args.out, llm=llm_config(args),
        encoder=EncoderConfig(kind=args.encoder, path=args.encoder_path),
        grounding=GroundingConfig(threshold=args.threshold), users=args.users,
        max_history=args.max_history,
        user_ids=tuple(args.user_ids) if args.user_ids else None, limit=args.limit)
    cfg.encoder.resolved_path()  # a missing folder fails before Ray starts
    read_items(cfg.data)
    with start_ray():
        s = expand(cfg)
    st = s["status"]
    print(f"expanded {s['users']:,} users with {s['llm']}: {st['expanded']} expanded, "
          f"{st['fallback_no_topics'] + st['fallback_llm_error'] + st['fallback_timeout']} "
          f"fell back to their own items, {st['no_history']} without history; JSON valid "
          f"{s['json_valid_rate']:.1%}, topics surviving grounding {s['topic_survival']:.1%}, "
          f"{s['profiles_per_s']:.2f} profiles/s -> {cfg.out}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m flows.expand", description=__doc__.splitlines()[0])
    add_args(p)
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()

