"""`warmstart expand`: LLM interest expansion for users with sparse histories, on Ray Data.

    profiles (a user's latest items: title, category, style, review)
      -> prompt -> LLM actors (JSON-constrained)           stage 1, `GenerateTopics`
      -> parse, clean, ground -> encoder -> interest vector stage 2, `GroundAndEmbed`
      -> <out>/interests.parquet, items.parquet, stats.json

The stages, their statuses and the folder's format live in interests/ (stages.py,
artifact.py); this flow chooses the users, runs the stages on the running Ray, embeds the
catalog with the same encoder (a Ray Data job) and writes the folder serving reads from
`<artifacts>/interests/`.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from flows.layout import (
    ARTIFACTS,
    DATA,
    Split,
    read_interactions,
    read_items,
    read_reviews,
    read_users,
)
from interests.artifact import FOLDER, write_interests
from interests.backends import BACKENDS, MODELS, LLMConfig
from interests.grounding import GroundingConfig, catalog_vocabulary
from interests.profiles import build_profiles
from interests.prompts import PromptConfig
from interests.stages import run_generate, run_ground, summarize
from train.accelerators import ACCELERATORS
from train.encoders import TEXT_KINDS, EncoderConfig, embed_texts, item_texts, load_encoder
from train.storage import location

SELECTIONS = ("sparse", "all")  # which users `users` picks


@dataclass(frozen=True)
class ExpandConfig:
    data: Path = DATA
    out: Path = ARTIFACTS / FOLDER  # serving reads <artifacts>/interests
    llm: LLMConfig = field(default_factory=LLMConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    days: tuple[int, ...] = Split().train  # whose interactions make the histories
    users: str = "sparse"  # "sparse": at most `max_history` clicks in `days`; "all"
    max_history: int = 3
    user_ids: tuple[str, ...] | None = None  # exactly these users (overrides `users`)
    limit: int | None = None  # the first N selected users, for trials
    use_ray: bool = True  # False: both stages in this process (tests, overhead benchmark)

    def __post_init__(self) -> None:
        if self.users not in SELECTIONS:
            raise ValueError(f"users must be one of {', '.join(SELECTIONS)}, got {self.users!r}")
        if self.max_history < 1:
            raise ValueError("max_history must be >= 1")


def select_users(cfg: ExpandConfig, clicks: pd.DataFrame) -> list[str]:
    """The users to expand: listed ones, or every user with at most `max_history` clicks."""
    if cfg.user_ids is not None:
        chosen = list(cfg.user_ids)
    else:
        users = read_users(cfg.data).index.astype(str)
        n = clicks.groupby("user_id").size().reindex(users, fill_value=0)
        chosen = list(users if cfg.users == "all" else n.index[n <= cfg.max_history])
    return chosen[:cfg.limit] if cfg.limit else chosen


def load_profiles(cfg: ExpandConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(items, profiles) for the configured users."""
    items = read_items(cfg.data)
    inter = read_interactions(cfg.data, cfg.days, ("user_id", "item_id", "ts", "label"))
    clicks = inter.loc[inter["label"] == 1, ["user_id", "item_id", "ts"]]
    users = select_users(cfg, clicks)
    return items, build_profiles(items, clicks, users, read_reviews(cfg.data),
                                 cfg.prompt.max_items)


def expand(cfg: ExpandConfig) -> dict[str, Any]:
    """Expand the configured users and write `cfg.out`; returns the stats also saved there."""
    t0 = time.perf_counter()
    items, profiles = load_profiles(cfg)
    if profiles.empty:
        raise ValueError(f"no users selected from {cfg.data}; check --users/--max-history "
                         "or pass --user-ids")
    vocabulary = catalog_vocabulary(items, cfg.grounding)
    t1 = time.perf_counter()
    generated = run_generate(profiles, cfg.llm, cfg.prompt, cfg.use_ray)
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


# --- Command line -------------------------------------------------------------------------

def add_llm_args(p: argparse.ArgumentParser) -> None:
    d = LLMConfig()
    p.add_argument("--llm-backend", choices=BACKENDS, default=d.backend)
    p.add_argument("--llm-model", default=d.model,
                   help=f"{', '.join(MODELS)}, or custom (with --llm-path)")
    p.add_argument("--llm-path", default=d.path,
                   help="local HF folder or .gguf file (never downloaded)")
    p.add_argument("--accelerator", choices=ACCELERATORS, default=d.accelerator)
    p.add_argument("--tensor-parallel-size", type=int, default=d.tensor_parallel_size,
                   help="default: the model preset's")
    p.add_argument("--llm-batch-size", type=int, default=d.batch_size)
    p.add_argument("--llm-timeout", type=float, default=d.timeout_s,
                   help="seconds per batch before its users fall back (default %(default)s)")


def llm_config(args: argparse.Namespace) -> LLMConfig:
    return LLMConfig(backend=args.llm_backend, model=args.llm_model, path=args.llm_path,
                     accelerator=args.accelerator,
                     tensor_parallel_size=args.tensor_parallel_size,
                     batch_size=args.llm_batch_size, timeout_s=args.llm_timeout)


# A URI location is mirrored locally for the run, and uploaded after when written
# (train/storage.py).
LOCATIONS = {"data": "read", "out": "write"}


def add_args(p: argparse.ArgumentParser) -> None:
    d = ExpandConfig()
    p.add_argument("--data", type=location, default=d.data)
    p.add_argument("--out", type=location, default=d.out,
                   help=f"output folder; serving reads <artifacts>/{FOLDER}")
    add_llm_args(p)
    p.add_argument("--encoder", choices=TEXT_KINDS, default=d.encoder.kind)
    p.add_argument("--encoder-path", default=d.encoder.path,
                   help="local encoder folder (t5, sentence-transformers)")
    p.add_argument("--threshold", type=float, default=d.grounding.threshold,
                   help="cosine similarity a topic needs to its nearest catalog term "
                        "(default %(default)s)")
    p.add_argument("--users", choices=SELECTIONS, default=d.users)
    p.add_argument("--max-history", type=int, default=d.max_history,
                   help="'sparse' users have at most this many clicks (default %(default)s)")
    p.add_argument("--user-ids", nargs="+", default=d.user_ids, help="expand exactly these users")
    p.add_argument("--limit", type=int, default=d.limit, help="only the first N selected users")


def config(args: argparse.Namespace) -> ExpandConfig:
    return ExpandConfig(
        data=args.data, out=args.out, llm=llm_config(args),
        encoder=EncoderConfig(kind=args.encoder, path=args.encoder_path),
        grounding=GroundingConfig(threshold=args.threshold), users=args.users,
        max_history=args.max_history,
        user_ids=tuple(args.user_ids) if args.user_ids else None, limit=args.limit)


def run(args: argparse.Namespace) -> None:
    from flows.runtime import start_ray

    cfg = config(args)
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


if __name__ == "__main__":
    from flows.cli import run_module

    run_module("expand")
