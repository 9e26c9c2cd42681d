"""The experiment package: its pieces without Ray (grid files, merging, exclusion, metrics by
hand), and one run on tiny data with MiniLM and a tiny T5 that writes every chart."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flows.experiment import experiment
from flows.experiment.config import ExperimentConfig, NamedEncoder, NamedLLM, load_grid
from flows.experiment.methods import MERGED_SIGNALS, interleave, merged, quality, top_excluding
from flows.experiment.report import CHARTS
from index.faiss_index import build_index
from interests.backends import LLMConfig
from tests.helpers import REPO
from train.encoders import EncoderConfig

GRIDS = REPO / "bench" / "grids"


def test_shipped_grids_parse() -> None:
    cpu = load_grid(GRIDS / "cpu.yaml")
    assert [m.name for m in cpu.llms] == ["smollm2-hf", "smollm2-vllm"]
    assert cpu.llms[1].llm.backend == "vllm" and cpu.batch_sizes == (1, 4, 8, 16)
    gpu = load_grid(GRIDS / "gpu.yaml", max_users=10)
    assert gpu.max_users == 10 and gpu.llms[2].tensor_parallel_sizes == (1, 2, 4)
    assert gpu.llms[2].llm.tp == 1 and gpu.llms[2].llm.ray_resources() == {"num_gpus": 1}


def test_grid_errors_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "g.yaml"
    bad.write_text("llms: [{name: a}]\nmax_user: 3\n")
    with pytest.raises(ValueError, match="unknown keys \\['max_user'\\]"):
        load_grid(bad)
    bad.write_text("llms: [{name: a, hardware: tpu-pod}]\n")
    with pytest.raises(ValueError, match="no price per hour for hardware \\['tpu-pod'\\]"):
        load_grid(bad)


def test_interleave_alternates_without_repeats() -> None:
    a = np.array([[1, 2, 3, 4]])
    b = np.array([[2, 5, 1, 6]])
    # a1=1, b1=2, a2=2 (seen), b2=5, a3=3, b3=1 (seen), a4=4
    assert interleave(a, b, 5).tolist() == [[1, 2, 5, 3, 4]]


def test_top_excluding_leaves_out_the_known_item() -> None:
    vectors = np.eye(4, dtype=np.float32)
    vectors[1] = [0.9, 0.1, 0, 0]
    index = build_index(vectors)
    rows, scores = top_excluding(index, vectors[[0]], np.array([0]), 2)
    assert rows.tolist() == [[1, 2]] or rows.tolist() == [[1, 3]]
    assert scores[0, 0] == pytest.approx(0.9)


def test_quality_by_hand() -> None:
    top = np.array([[3, 1, 7], [5, 6, 8]])
    relevant = [np.array([7, 9]), np.array([2])]
    q = quality(top, relevant, 3)
    # user 0: 1 of 2 found, DCG 1/log2(4) = 0.5, ideal 1 + 1/log2(3) = 1.631; user 1: none.
    assert q.recall == pytest.approx((0.5 + 0.0) / 2)
    assert q.ndcg == pytest.approx((0.5 / 1.6309297535714575 + 0.0) / 2)


def test_merged_blends_the_sources_on_the_fit_users_and_keeps_the_better_one() -> None:
    """Later clicks follow popularity alone here; the merged method must find that on the
    fit half, and score at least as well as popularity on the other half."""
    rng = np.random.default_rng(0)
    n_items, n_users, k = 200, 120, 10
    vectors = rng.normal(size=(n_items, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    popularity = np.sort(rng.pareto(1.0, n_items))[::-1].copy()  # item 0 the most popular
    known = rng.integers(20, n_items, n_users)
    interests = vectors[rng.integers(0, n_items, n_users)]
    relevant = [np.setdiff1d(rng.choice(15, 5, replace=False), [kk]) for kk in known]
    fit = np.arange(n_users) % 2 == 0
    top, weights = merged(vectors, known, interests, popularity, relevant, fit, k)
    assert top.shape == (n_users, k) and weights is not None
    assert weights.chosen in ("blend", "popularity")
    w = dict(zip(MERGED_SIGNALS, weights.weights, strict=True))
    assert w["popularity"] > abs(w["item_neighbours"]) and w["popularity"] > abs(
        w["llm_interests"])
    popular = np.tile(np.argsort(-popularity)[:k], (n_users, 1))
    assert quality(top, relevant, k, ~fit).recall >= quality(popular, relevant, k,
                                                             ~fit).recall - 1e-9
    assert (top != known[:, None]).all()  # never the item the user already has


@pytest.mark.ray
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
    assert list(r.pairs) == ["smollm2 x minilm", "smollm2 x t5-tiny"]
    m = np.array(r.overlap.matrix)
    np.testing.assert_allclose(np.diag(m), 1.0)
    np.testing.assert_allclose(m, m.T)
    assert r.oracle is not None and r.users == 8
    for p in r.pairs.values():
        assert p.json_valid_rate == 1.0 and 0 < p.distinct_output_rate <= 1
        assert sum(p.status.values()) == 8 and p.cost_per_1k_usd > 0
        for q in p.quality.values():
            assert 0 <= q.recall <= 1 and 0 <= q.ndcg <= 1
        assert set(p.quality) == {"item_neighbours", "llm_interests", "merged", "interleaved"}
    assert r.reported_users < r.users and len(r.ablation) == len(r.pairs)
    assert {p.batch_size for p in r.latency} == {1, 2}
    saved = json.loads((cfg.out / "results.json").read_text())
    assert saved == r.to_dict() and saved["pairs"].keys() == r.pairs.keys()
