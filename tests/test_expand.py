"""Interest expansion without Ray: prompts, validation and grounding on fixed strings, and
every kind of bad input (no history, unknown items, an LLM that raises, times out or talks
nonsense) ending as a counted fallback with the user still in the output."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.expand import build_profiles, generate_batch, ground_batch, summarize
from flows.llm import TOPICS_SCHEMA, HistoryItem, LLMConfig, Messages, build_messages
from flows.topics import (
    Grounder,
    GroundingConfig,
    catalog_vocabulary,
    clean_topics,
    drop_reason,
    interest_vector,
    parse_topics,
)
from train.encoders import EncoderConfig, TextEncoder, load_encoder

ITEMS = pd.DataFrame({
    "item_id": ["b1", "b2", "b3", "k1", "k2", "k3"],
    "name": ["Trail Hiking Boot", "Leather Dress Boot", "Running Sneaker",
             "Cast Iron Pan", "Chef Knife", "Mixing Bowls"],
    "category": ["footwear"] * 3 + ["housewares"] * 3,
    "style": ["boot", "boot", "sneaker", "kitchen", "kitchen", "bowls"],
    "description": ["A sturdy boot for mountain trails.", "A polished boot for the office.",
                    "A light sneaker for running.", "A heavy pan for searing.",
                    "A sharp knife for the kitchen.", "Bowls for the kitchen."],
    "price": [120.0, 150.0, 90.0, 40.0, 60.0, 25.0],
})


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return load_encoder(EncoderConfig())


@pytest.fixture(scope="module")
def grounder(minilm: TextEncoder) -> Grounder:
    return Grounder(minilm, catalog_vocabulary(ITEMS, min_items=2), GroundingConfig())


# --- Prompts ------------------------------------------------------------------------------

def test_prompt_holds_the_latest_items_and_cut_reviews() -> None:
    hist = [HistoryItem(f"Book {n}", "books", "travel") for n in range(7)]
    hist[-1] = HistoryItem("Dune", "books", "none", "  A sweeping\nspace opera. " * 40)
    system, user = build_messages(hist, max_items=3, max_review_chars=50)
    assert system["role"] == "system" and "JSON array" in system["content"]
    text = user["content"]
    assert "Book 3" not in text and "Book 4" in text and "Book 5" in text
    # "none" is not shown as a style; the review is one line, cut to 50 characters + "...".
    assert '- Dune (books); their review: "A sweeping space opera. A sweeping space opera. A ..."' \
        in text
    assert text.index("Book 4") < text.index("Dune")  # newest last


def test_prompt_needs_history() -> None:
    with pytest.raises(ValueError, match="at least one history item"):
        build_messages([])


def test_schema_bounds_the_array_and_its_strings() -> None:
    assert (TOPICS_SCHEMA["minItems"], TOPICS_SCHEMA["maxItems"]) == (3, 5)
    import re

    pattern = re.compile(TOPICS_SCHEMA["items"]["pattern"])
    assert pattern.match("trail running") and pattern.match("ab")
    assert not pattern.match("a") and not pattern.match("x" * 31)
    assert not pattern.match(", ") and not pattern.match("route 66") and pattern.match("x" * 30)


# --- Validation ---------------------------------------------------------------------------

def test_parse_counts_what_is_not_a_list_of_strings() -> None:
    assert parse_topics('["a", "b"]') == (["a", "b"], True, Counter())
    assert parse_topics('["a", 3, null]') == (["a"], True, Counter(not_a_string=2))
    assert parse_topics('{"topics": ["a"]}') == ([], False, Counter(not_a_list=1))
    assert parse_topics('["unterminated') == ([], False, Counter(invalid_json=1))
    assert parse_topics("") == ([], False, Counter(invalid_json=1))


@pytest.mark.parametrize(("topic", "reason"), [
    ("", "empty"),
    ("a very long topic that goes on and on", "too_long"),
    ("one two three four five", "too_long"),
    ("1234", "number"),
    ("$19.99", "number"),
    ("2024-01-05", "date"),
    ("12/25/2023", "date"),
    ("march 2021", "date"),
    ("1990s", "date"),
    ("https://example.org", "path_or_url"),
    ("www.shop", "path_or_url"),
    ("products/boots", "path_or_url"),
    ("boots.json", "path_or_url"),
    ("hiking boots", None),
    ("rock & roll", None),
])
def test_drop_reasons(topic: str, reason: str | None) -> None:
    assert drop_reason(topic) == reason


def test_clean_normalizes_dedupes_and_counts() -> None:
    kept, drops = clean_topics(["Hiking  Boots.", "hiking boots", " ", "2024-01-01",
                                '"Trail Running"', "https://x.io"])
    assert kept == ["hiking boots", "trail running"]
    assert drops == Counter(duplicate=1, empty=1, date=1, path_or_url=1)


def test_vocabulary_is_categories_styles_and_frequent_words() -> None:
    vocab = catalog_vocabulary(ITEMS, min_items=2)
    assert vocab[:2] == ["footwear", "housewares"]
    assert {"boot", "sneaker", "kitchen", "bowls"} <= set(vocab)
    assert "kitchen" in vocab and "for" not in vocab  # frequent word kept, stopword not
    assert "trails" not in vocab  # in one item only


def test_vocabulary_needs_something_to_ground_on() -> None:
    with pytest.raises(ValueError, match="category or description"):
        catalog_vocabulary(pd.DataFrame({"item_id": ["a"]}))


# --- Grounding (real MiniLM) --------------------------------------------------------------

def test_grounding_keeps_catalog_topics_and_drops_the_rest(grounder: Grounder) -> None:
    kept, terms, vecs, dropped = grounder.ground(["hiking boots", "kitchen knives",
                                                  "quantum chromodynamics"])
    assert kept == ["hiking boots", "kitchen knives"]
    assert terms[0] in ("boot", "footwear") and terms[1] in ("kitchen", "knife", "housewares")
    assert dropped == 1 and vecs.shape == (2, 384)


def test_interest_vector_is_a_unit_mean() -> None:
    v = interest_vector(np.array([[1.0, 0.0], [0.0, 1.0]], np.float32))
    np.testing.assert_allclose(v, [2 ** -0.5, 2 ** -0.5], rtol=1e-6)


# --- Profiles and bad input ---------------------------------------------------------------

def _clicks(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])


def test_profiles_keep_latest_known_items_with_reviews() -> None:
    clicks = _clicks([("u1", "b1", 3), ("u1", "k1", 1), ("u1", "zz", 2), ("u1", "b3", 5),
                      ("u2", "nope", 1)])
    reviews = pd.DataFrame({"user_id": ["u1"], "item_id": ["b3"], "text": ["Great for 5k"]})
    p = build_profiles(ITEMS, clicks, ["u1", "u2", "u3"], reviews, max_items=2).set_index(
        "user_id")
    assert p.loc["u1", "titles"] == ["Trail Hiking Boot", "Running Sneaker"]  # ts 3, 5
    assert p.loc["u1", "reviews"] == ["", "Great for 5k"]
    assert p.loc["u1", "n_unknown"] == 1 and p.loc["u2", "n_unknown"] == 1
    assert p.loc["u2", "n_history"] == 0 and p.loc["u3", "n_history"] == 0


class Scripted:
    """A backend that answers from a script, to drive each failure path."""

    name = "scripted"

    def __init__(self, answer: str | Exception, delay: float = 0.0) -> None:
        self.answer, self.delay = answer, delay

    def generate(self, prompts: list[Messages]) -> list[str]:
        time.sleep(self.delay)
        if isinstance(self.answer, Exception):
            raise self.answer
        return [self.answer] * len(prompts)


@pytest.mark.parametrize(("backend", "timeout", "status"), [
    (Scripted('["hiking boots", "running shoes", "trail gear"]'), 60.0, "expanded"),
    (Scripted('["zzqx", "blorp", "1999"]'), 60.0, "fallback_no_topics"),
    (Scripted("I think they like boots"), 60.0, "fallback_no_topics"),
    (Scripted(RuntimeError("CUDA out of memory")), 60.0, "fallback_llm_error"),
    (Scripted('["hiking', delay=0.05), 0.01, "fallback_timeout"),
])
def test_every_user_comes_out_with_a_reason(grounder: Grounder, backend: Scripted,
                                            timeout: float, status: str) -> None:
    clicks = _clicks([("u1", "b1", 1), ("u2", "k1", 1), ("u4", "gone", 1)])
    profiles = build_profiles(ITEMS, clicks, ["u1", "u2", "u3", "u4"])
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
    profiles = build_profiles(ITEMS, _clicks([("u1", "k2", 1)]), ["u1"])
    out = ground_batch(generate_batch(profiles, Scripted('["zzqx", "blorp", "qwv"]'),
                                      LLMConfig()), grounder)
    expected = minilm.encode(["Chef Knife. A sharp knife for the kitchen."])[0]
    np.testing.assert_allclose(out.loc[0, "vector"], expected, atol=1e-5)
    assert json.loads(out.loc[0, "drops"]) == {"ungrounded": 3}


def test_a_backend_returning_too_few_outputs_is_an_error(grounder: Grounder) -> None:
    class Short(Scripted):
        def generate(self, prompts: list[Messages]) -> list[str]:
            return ['["boots", "shoes", "trail"]']

    profiles = build_profiles(ITEMS, _clicks([("u1", "b1", 1), ("u2", "b2", 1)]), ["u1", "u2"])
    out = generate_batch(profiles, Short(""), LLMConfig())
    assert (out["llm_error"].str.contains("1 outputs for 2")).all()


def test_llm_config_errors_say_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs its weights.*--llm-path"):
        LLMConfig(model="llama-3.1-8b")
    with pytest.raises(ValueError, match="unknown"):
        LLMConfig(backend="llamacpp")
    from flows.llm import model_folder

    with pytest.raises(FileNotFoundError, match="not a Hugging Face model folder"):
        model_folder(LLMConfig(model="custom", path=str(tmp_path)))


def test_presets_give_tensor_parallelism_per_accelerator() -> None:
    cfg = LLMConfig(backend="vllm", model="llama-3.3-70b", path="/models/l70",
                    accelerator="gpu")
    assert cfg.tp == 4 and cfg.ray_resources() == {"num_gpus": 4}
    neuron = replace(cfg, accelerator="neuron")
    assert neuron.tp == 32 and neuron.ray_resources() == {"resources": {"neuron_cores": 32}}
    assert replace(cfg, tensor_parallel_size=8).tp == 8
    assert LLMConfig().ray_resources() == {"num_cpus": 1.0}


def test_serving_refuses_an_unusable_interest_folder(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from flows.expand import write_interests
    from serve.recommender import load_interests

    assert load_interests(tmp_path / "absent", np.array(["b1"])) is None
    clicks = _clicks([("u1", "b1", 1)])
    result = ground_batch(generate_batch(build_profiles(ITEMS, clicks, ["u1"]),
                                         Scripted('["boots", "shoes", "trail"]'), LLMConfig()),
                          _FakeGrounder())
    folder = tmp_path / "interests"
    write_interests(folder, result, ["b1", "b2"], np.eye(2, 4, dtype=np.float32), {})
    ok = load_interests(folder, np.array(["b1", "b2", "k1"]))
    assert ok is not None and set(ok.vectors) == {"u1"} and ok.rows.tolist() == [0, 1]
    # Item vectors from another encoder (3-d against the users' 4-d).
    pq.write_table(pa.table({"item_id": ["b1"], "vector": pa.FixedSizeListArray.from_arrays(
        np.ones(3, np.float32), 3)}), folder / "items.parquet")
    with pytest.raises(ValueError, match="two encoders mixed; rerun `warmstart expand"):
        load_interests(folder, np.array(["b1"]))
    (folder / "items.parquet").unlink()
    with pytest.raises(ValueError, match="is unreadable.*rerun `warmstart expand"):
        load_interests(folder, np.array(["b1"]))


class _FakeGrounder(Grounder):
    """4-d unit vectors for any topic: enough to write an interest folder."""

    def __init__(self) -> None:
        from flows.topics import GroundingConfig

        class Enc:
            name, dim = "fake", 4

            def encode(self, texts: list[str]) -> np.ndarray:
                v = np.zeros((len(texts), 4), np.float32)
                v[:, 0] = 1.0
                return v

        self.encoder, self.cfg = Enc(), GroundingConfig(threshold=0.0)
        self.terms = np.array(["boots"], dtype=object)
        self.term_vectors = self.encoder.encode(["boots"])
