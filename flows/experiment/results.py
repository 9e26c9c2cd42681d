"""What the experiment measures, as values: a method's quality, one variant of a pair (an
LLM x encoder x prompt x grounding), a pair's row in the report, a latency point, and the
whole run. `ExperimentResults.to_dict` is what `results.json` holds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Quality:
    """Mean recall and NDCG at k over the reported users."""

    recall: float
    ndcg: float


@dataclass(frozen=True)
class Variant:
    """One pair with one prompt style and one grounding vocabulary: what `--ablation`
    compares, and the source of each pair's row."""

    llm: str
    encoder: str
    prompt: str  # interests/prompts.py style
    catalog_titles: bool  # grounding vocabulary with titles and kind names
    llm_interests: Quality  # (c)
    interleaved: Quality  # (b) and (c) interleaved
    merged: Quality  # (d)
    merged_weights: dict[str, float] | None  # (d)'s weights per signal; None: interleaved
    merged_chosen: str | None  # "blend", or the one signal (d) kept
    distinct_output_rate: float  # distinct topic sets over prompted users
    topic_survival: float  # topics kept by grounding over topics generated


@dataclass(frozen=True)
class PairRow:
    """One LLM x encoder pair in its main variant: quality beside cost and latency."""

    llm: str
    encoder: str
    hardware: str  # a key of the grid's prices
    prompt: str
    catalog_titles: bool
    quality: dict[str, Quality]  # item_neighbours, llm_interests, merged, interleaved
    merged_weights: dict[str, float] | None
    merged_chosen: str | None
    spread: float  # mean cosine distance of (c)'s top k: higher is broader
    distinct_output_rate: float
    json_valid_rate: float  # LLM outputs that parsed, before grounding
    topic_survival: float
    status: dict[str, int]  # users per expansion status (interests/stages.py STATUSES)
    drops: dict[str, int]  # topics dropped per reason
    latency_p50_s: float  # per profile
    latency_p99_s: float
    profiles_per_s: float
    cost_per_1k_usd: float  # from the grid's prices
    examples: list[dict[str, Any]]  # a few users: titles, topics, topics kept


@dataclass(frozen=True)
class LatencyPoint:
    """Per-profile latency and throughput of one LLM at one batch size and tp degree."""

    llm: str
    tp: int
    batch_size: int
    p50_s: float
    p99_s: float
    profiles_per_s: float


@dataclass(frozen=True)
class Overlap:
    """Top-5 overlap between pairs: matrix[a][b], pairs in `pairs`' order."""

    pairs: list[str]
    matrix: list[list[float]]


@dataclass(frozen=True)
class ExperimentResults:
    dataset: str
    data: str
    users: int
    reported_users: int  # the users every figure is on (the others fit (d)'s weights)
    k: int
    cohort: str  # "single" or "first" (flows/experiment/cohort.py)
    created: str
    baseline: dict[str, Quality]  # (a) popularity
    oracle: Quality | None  # the generator's expected clicks; None without ground truth
    pairs: dict[str, PairRow]  # "llm x encoder" -> its row
    ablation: list[Variant]  # every variant run (one per pair without --ablation)
    llm_runs: dict[str, dict[str, Any]]  # "llm (style prompt)" -> wall time, label, hardware
    overlap: Overlap
    latency: list[LatencyPoint]
    prices: dict[str, float]
    wall_s: float

    def to_dict(self) -> dict[str, Any]:  # JSON: results.json
        return _jsonable(dataclasses.asdict(self))


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
