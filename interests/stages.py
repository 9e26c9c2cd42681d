"""The two stages of interest expansion as plain batch functions, and their Ray Data runs.

    profiles -> stage 1 `generate_batch`: prompt -> LLM (JSON-constrained)
             -> stage 2 `ground_batch`: parse, clean, ground -> encoder -> interest vector

Every input user comes out with a `status`:

    expanded            topics survived grounding; the vector is their mean embedding
    fallback_no_topics  the LLM answered, nothing survived; vector from the user's own items
    fallback_llm_error  the LLM raised on the user's batch; vector from the user's own items
    fallback_timeout    the batch hit `timeout_s` before the JSON closed; same fallback
    no_history          nothing to prompt with (no interactions, or only unknown item ids);
                        no vector: serving treats the user as any cold user

The batch functions take pandas frames and are tested without Ray; `GenerateTopics` and
`GroundAndEmbed` only hold a loaded model between batches of a Ray Data actor pool.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from interests.backends import LLMBackend, LLMConfig, load_backend, model_folder
from interests.grounding import Grounder, GroundingConfig, interest_vector
from interests.profiles import history
from interests.prompts import PromptConfig, build_messages
from interests.topics import DROP_REASONS, clean_topics, parse_topics
from train.encoders import EncoderConfig, load_encoder

log = logging.getLogger(__name__)

STATUSES = ("expanded", "fallback_no_topics", "fallback_llm_error", "fallback_timeout",
            "no_history")


# --- Stage 1: the LLM ---------------------------------------------------------------------

def generate_batch(batch: pd.DataFrame, backend: LLMBackend, llm: LLMConfig,
                   prompt: PromptConfig | None = None) -> pd.DataFrame:
    """Adds llm_text, llm_error ("" / "error: ..." / "timeout"), llm_seconds (the wall time
    of the batch's generate call, which every profile in it waited for) and llm_batch (how
    many profiles shared that call)."""
    out = batch.copy()
    out["llm_text"], out["llm_error"], out["llm_seconds"], out["llm_batch"] = "", "", 0.0, 0
    todo = np.flatnonzero(out["n_history"].to_numpy() > 0)
    if not len(todo):
        return out
    prompts = [build_messages(history(out.iloc[i]), prompt) for i in todo]
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
    llm_text = np.full(len(out), "", dtype=object)
    llm_error = np.full(len(out), "", dtype=object)
    llm_text[todo] = texts
    if error:
        llm_error[todo] = error
    elif timed_out:
        llm_error[todo] = ["" if parse_topics(t)[1] else "timeout" for t in texts]
    out["llm_text"], out["llm_error"] = llm_text, llm_error
    out.loc[out.index[todo], "llm_seconds"] = seconds
    out.loc[out.index[todo], "llm_batch"] = len(todo)
    return out


class GenerateTopics:
    """Ray Data stage 1: each actor loads the LLM once (`load_backend`)."""

    def __init__(self, llm: LLMConfig, prompt: PromptConfig) -> None:
        self.llm, self.prompt = llm, prompt
        self.backend = load_backend(llm)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return generate_batch(batch, self.backend, self.llm, self.prompt)



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

def run_generate(profiles: pd.DataFrame, llm: LLMConfig, prompt: PromptConfig | None = None,
                 use_ray: bool = True) -> pd.DataFrame:
    """Stage 1 over all profiles, in profile order: on Ray Data actors, or in this process."""
    if not use_ray:
        backend = load_backend(llm)
        parts = [generate_batch(profiles.iloc[s:s + llm.batch_size], backend, llm, prompt)
                 for s in range(0, len(profiles), llm.batch_size)]
        return pd.concat(parts)
    import ray.data

    _prepare(llm)
    ds = _blocks(profiles, llm.batch_size)
    ds = ds.map_batches(GenerateTopics, fn_constructor_kwargs={
                            "llm": llm, "prompt": prompt or PromptConfig()},
                        compute=ray.data.ActorPoolStrategy(size=llm.concurrency),
                        batch_size=llm.batch_size, batch_format="pandas",
                        **llm.ray_resources())  # restarts as in embed_texts (ray#53727)
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
                        batch_size=encoder.batch_size, batch_format="pandas")
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
