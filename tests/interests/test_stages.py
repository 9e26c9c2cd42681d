"""The two stages without Ray: every kind of bad input (no history, unknown items, an LLM
that raises, times out or talks nonsense) ends as a counted fallback with the user still in
the output; and the real SmolLM2 cut off by the timeout falls back too."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from interests.backends import LLMConfig
from interests.grounding import Grounder, GroundingConfig, catalog_vocabulary
from interests.profiles import build_profiles
from interests.prompts import Messages
from interests.stages import generate_batch, ground_batch, run_generate, run_ground, summarize
from tests.helpers import SHOES_AND_KITCHEN, clicks
from tests.interests.helpers import Scripted
from train.encoders import EncoderConfig, TextEncoder


@pytest.mark.parametrize(("backend", "timeout", "status"), [
    (Scripted('["hiking boots", "running shoes", "trail gear"]'), 60.0, "expanded"),
    (Scripted('["zzqx", "blorp", "1999"]'), 60.0, "fallback_no_topics"),
    (Scripted("I think they like boots"), 60.0, "fallback_no_topics"),
    (Scripted(RuntimeError("CUDA out of memory")), 60.0, "fallback_llm_error"),
    (Scripted('["hiking', delay=0.05), 0.01, "fallback_timeout"),
])
def test_every_user_comes_out_with_a_reason(grounder: Grounder, backend: Scripted,
                                            timeout: float, status: str) -> None:
    seen = clicks([("u1", "b1", 1), ("u2", "k1", 1), ("u4", "gone", 1)])
    profiles = build_profiles(SHOES_AND_KITCHEN, seen, ["u1", "u2", "u3", "u4"])
    llm = replace(LLMConfig(), timeout_s=timeout)
    out = ground_batch(generate_batch(profiles, backend, llm), grounder)
    assert out["user_id"].tolist() == ["u1", "u2", "u3", "u4"]
    assert out["status"].tolist() == [status, status, "no_history", "no_history"]
    for v, s in zip(out["vector"], out["status"], strict=True):
        if s == "no_history":
            assert v is None
        else:  # expanded or fallen back: always a unit vector to search with
            assert abs(np.linalg.norm(v) - 1) < 1e-5
    stats = summarize(out)
    assert stats["users"] == 4 and stats["status"][status] == 2
    assert stats["status"]["no_history"] == 2 and stats["unknown_items"] == 1
    if status == "fallback_llm_error":
        assert out.loc[0, "llm_error"].startswith("error: RuntimeError: CUDA out of memory")


def test_fallback_vector_is_the_users_own_items(grounder: Grounder, minilm: TextEncoder) -> None:
    profiles = build_profiles(SHOES_AND_KITCHEN, clicks([("u1", "k2", 1)]), ["u1"])
    out = ground_batch(generate_batch(profiles, Scripted('["zzqx", "blorp", "qwv"]'),
                                      LLMConfig()), grounder)
    expected = minilm.encode(["Chef Knife. A sharp knife for the kitchen."])[0]
    np.testing.assert_allclose(out.loc[0, "vector"], expected, atol=1e-5)
    assert json.loads(out.loc[0, "drops"]) == {"ungrounded": 3}


def test_a_backend_returning_too_few_outputs_is_an_error(grounder: Grounder) -> None:
    class Short(Scripted):
        def generate(self, prompts: list[Messages]) -> list[str]:
            return ['["boots", "shoes", "trail"]']

    profiles = build_profiles(SHOES_AND_KITCHEN, clicks([("u1", "b1", 1), ("u2", "b2", 1)]),
                              ["u1", "u2"])
    out = generate_batch(profiles, Short(""), LLMConfig())
    assert (out["llm_error"].str.contains("1 outputs for 2")).all()


def test_a_batch_cut_off_by_the_timeout_falls_back() -> None:
    """The real backend stopped after 10 ms leaves unfinished JSON: those users fall back
    to their own items and are counted as timed out."""
    profiles = build_profiles(SHOES_AND_KITCHEN, clicks([("u1", "b1", 1), ("u2", "k1", 1)]),
                              ["u1", "u2"])
    llm = LLMConfig(batch_size=2, timeout_s=0.01)
    out = run_ground(run_generate(profiles, llm, use_ray=False), EncoderConfig(),
                     catalog_vocabulary(SHOES_AND_KITCHEN), GroundingConfig(), use_ray=False)
    assert out["status"].tolist() == ["fallback_timeout"] * 2
    assert summarize(out)["json_valid_rate"] == 0.0
