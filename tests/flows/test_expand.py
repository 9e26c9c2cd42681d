"""`warmstart expand` on Ray Data with the real SmolLM2 model from its wheel: every selected
user comes out with a status, constrained decoding holds, serving reads what was written, and
the Ray Data actors answer what a direct call does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.expand import ExpandConfig, expand, load_profiles
from interests.artifact import ITEMS_FILE, STATS_FILE, load_interests, read_results
from interests.backends import LLMConfig
from interests.stages import STATUSES, run_generate
from tests.contracts import assert_schema_valid

pytestmark = pytest.mark.ray


def test_expand_on_ray_data_with_smollm2(tiny_data: Path, tmp_path: Path) -> None:
    cfg = ExpandConfig(data=tiny_data, out=tmp_path / "interests", limit=6,
                       llm=LLMConfig(batch_size=4))
    stats = expand(cfg)
    out = read_results(cfg.out)
    _, profiles = load_profiles(cfg)
    # Every selected user comes out, in order, with a status; constrained decoding holds.
    assert out["user_id"].tolist() == profiles["user_id"].tolist() and stats["users"] == 6
    assert set(out["status"]) <= set(STATUSES)
    prompted = out[out["n_history"] > 0]
    assert len(prompted) >= 1 and stats["json_valid_rate"] == 1.0
    for text in prompted["llm_text"]:
        assert_schema_valid(text)
    for v in prompted["vector"]:
        assert abs(np.linalg.norm(v) - 1) < 1e-5
    assert out.loc[out["n_history"] == 0, "vector"].isna().all()
    items = pd.read_parquet(cfg.out / ITEMS_FILE)
    assert len(items) == 300 and len(items["vector"].iloc[0]) == 384
    assert json.loads((cfg.out / STATS_FILE).read_text())["status"] == stats["status"]
    # Serving reads what expand wrote.
    interests = load_interests(cfg.out, items["item_id"].to_numpy())
    assert interests is not None and set(interests.vectors) == set(prompted["user_id"])
    # The Ray Data actor and a direct call give the same greedy outputs.
    direct = run_generate(profiles, LLMConfig(batch_size=4), use_ray=False)
    assert direct["llm_text"].tolist() == out["llm_text"].tolist()
