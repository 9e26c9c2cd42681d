"""Contract mixins: one set of tests that every implementation of an interface runs, in the
style of implicit's `recommender_base_test.py`. A test class for a model, a text encoder or
an LLM backend inherits the mixin and supplies the implementation; whatever it does beyond
the contract it tests in its own methods.

    class TestDLRM(ModelContract):
        kind = "dlrm"

    class TestMiniLM(TextEncoderContract):
        @pytest.fixture
        def encoder(self, minilm): return minilm
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from interests.prompts import HistoryItem, build_messages
from interests.topics import MAX_TOPICS, MIN_TOPICS, TOPICS_SCHEMA
from train.artifacts import load_model, save_model
from train.features import CONTEXT_SPARSE, DENSE, ITEM_SPARSE, USER_SPARSE
from train.registry import build, spec

VECTOR_WIDTHS = {"history": 5, "content": 6}
CARDS = {"user": 11, "age_bucket": 7, "gender": 3, "top_category": 5, "item": 21,
         "category": 5, "style": 9, "price_bucket": 12, "device": 4, "hour": 25,
         "weekday": 8} | VECTOR_WIDTHS


def random_batch(b: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """B rows of every model input, drawn within CARDS."""
    g = torch.Generator().manual_seed(seed)
    x = {n: torch.randint(0, c, (b,), generator=g) for n, c in CARDS.items()
         if n not in VECTOR_WIDTHS}
    x |= {n: torch.randn(b, w, generator=g) for n, w in VECTOR_WIDTHS.items()}
    x["dense"] = torch.randn(b, len(DENSE), generator=g)
    x["label"] = torch.randint(0, 2, (b,), generator=g).float()
    x["item_row"] = x["item"]
    return x


def pair_batch(users: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rows that differ only by user and item id: every other input is fixed."""
    b = len(users)
    x = {n: torch.ones(b, dtype=torch.long) for n in (*USER_SPARSE, *ITEM_SPARSE,
                                                       *CONTEXT_SPARSE)}
    x |= {n: torch.zeros(b, w) for n, w in VECTOR_WIDTHS.items()}
    x["dense"] = torch.zeros(b, len(DENSE))
    x["user"], x["item"], x["item_row"] = users, items, items
    x["label"] = (users == items).float()
    return x


class ModelContract:
    """What every model of train.registry does: one score per row, the same scores after a
    save and reload through the artifact files, a loss from its training wrapper, and a tiny
    fit whose answer is known: user u likes item u and nothing else, so after training the
    best item for each user must be its own."""

    kind: str
    known_answer_steps = 300
    known_answer_lr = 0.02

    def make(self, seed: int = 0) -> Any:
        torch.manual_seed(seed)
        return build(self.kind, spec(self.kind).config(), CARDS)

    def known_answer_batch(self, users: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training rows for the known answer; by default every (user, item) pair."""
        u, i = torch.meshgrid(users, users, indexing="ij")
        return pair_batch(u.reshape(-1), i.reshape(-1))

    def test_scores_one_finite_value_per_row(self) -> None:
        scores = self.make().eval()(random_batch(7))
        assert scores.shape == (7,) and torch.isfinite(scores).all()

    def test_save_and_reload_give_identical_scores(self, tmp_path: Path) -> None:
        model = self.make().eval()
        save_model(model, tmp_path, CARDS)
        again = load_model(self.kind, tmp_path)
        x = random_batch(9, seed=1)
        with torch.no_grad():
            torch.testing.assert_close(model(x), again(x), rtol=0, atol=0)

    def test_loss_is_a_scalar_with_gradients(self) -> None:
        model = self.make()
        loss = spec(self.kind).task(model)(random_batch(16))
        loss.backward()
        assert loss.ndim == 0 and torch.isfinite(loss)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())

    def test_learns_who_likes_what(self) -> None:
        users = torch.arange(1, 9)  # 8 users and 8 items with the same ids
        model = self.make(seed=3)
        task = spec(self.kind).task(model)
        opt = torch.optim.Adam(model.parameters(), lr=self.known_answer_lr)
        x = self.known_answer_batch(users)
        for _ in range(self.known_answer_steps):
            loss = task(x)
            opt.zero_grad()
            loss.backward()
            opt.step()
        u, i = torch.meshgrid(users, users, indexing="ij")
        with torch.no_grad():
            scores = model.eval()(pair_batch(u.reshape(-1), i.reshape(-1))).reshape(8, 8)
        assert scores.argmax(dim=1).tolist() == list(range(8)), scores


class TextEncoderContract:
    """What every text encoder does (train.encoders.TextEncoder): float32 rows of unit
    length, one per text; no rows for no texts; the same vector for a text whatever else is
    in its batch; different texts apart. A subclass gives the `encoder` fixture."""

    texts = ["red wool coat", "blue running shoes", "cast iron frying pan"]

    @pytest.fixture
    def encoder(self) -> Any:
        raise NotImplementedError("a TextEncoderContract subclass provides `encoder`")

    def test_unit_rows_of_float32(self, encoder: Any) -> None:
        from train.encoders import TextEncoder

        assert isinstance(encoder, TextEncoder) and encoder.dim > 0 and encoder.name
        v = encoder.encode(self.texts)
        assert v.shape == (3, encoder.dim) and v.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)

    def test_no_texts_give_no_rows(self, encoder: Any) -> None:
        assert encoder.encode([]).shape == (0, encoder.dim)

    def test_a_text_is_encoded_alike_alone_and_in_a_padded_batch(self, encoder: Any) -> None:
        alone = encoder.encode(["red shoes"])
        padded = encoder.encode(["red shoes", "the red blue running shoes for jogging, a "
                                              "green wool coat and a cast iron pan"])
        np.testing.assert_allclose(padded[0], alone[0], atol=1e-5)

    def test_deterministic_and_different_texts_differ(self, encoder: Any) -> None:
        a, b = encoder.encode(self.texts), encoder.encode(self.texts)
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a[0], a[1], atol=1e-3)


TOPIC = re.compile(TOPICS_SCHEMA["items"]["pattern"])
PROMPTS = [build_messages([HistoryItem(t, c, s)]) for t, c, s in (
    ("Rustic Green Tent", "outdoors", "camping"), ("Toy Story", "Animation", ""))]


def assert_schema_valid(text: str) -> None:
    topics = json.loads(text)
    assert isinstance(topics, list) and MIN_TOPICS <= len(topics) <= MAX_TOPICS, text
    assert all(isinstance(t, str) and TOPIC.match(t) for t in topics), text


class LLMBackendContract:
    """What every LLM backend does (interests.backends.LLMBackend): one text per prompt,
    each a JSON array that follows TOPICS_SCHEMA because decoding was constrained to it; the
    same texts again at temperature 0; nothing for no prompts. A subclass gives the
    `backend` fixture (class-scoped: models are slow to load)."""

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls) -> Any:
        raise NotImplementedError("an LLMBackendContract subclass provides `backend`")

    @pytest.fixture(scope="class")
    @classmethod
    def answers(cls, backend: Any) -> list[str]:
        return backend.generate(PROMPTS)

    def test_one_schema_valid_text_per_prompt(self, answers: list[str]) -> None:
        assert len(answers) == len(PROMPTS)
        for text in answers:
            assert_schema_valid(text)

    def test_greedy_decoding_repeats_itself(self, backend: Any, answers: list[str]) -> None:
        assert backend.generate(PROMPTS) == answers

    def test_no_prompts_give_no_texts(self, backend: Any) -> None:
        assert backend.generate([]) == [] and backend.name
