"""The experiment's grid: which LLMs and encoders, on what hardware at what price, and the
settings of one run; read from YAML by `load_grid`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flows.layout import DATA, RUNS, Split
from interests.backends import LLMConfig
from interests.grounding import GroundingConfig
from train.encoders import EncoderConfig

METHODS = ("popularity", "item_neighbours", "llm_interests", "merged")
# The prompt styles (interests/prompts.py) and catalog vocabularies (with titles and kind
# names, or without) each pair is run with; the last of each gives the pair rows.
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
    prompt_styles: tuple[str, ...] = ("detailed",)
    grounding_titles: tuple[bool, ...] = (True,)

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
