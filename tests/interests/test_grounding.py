"""Grounding: the catalog's vocabulary, and the real MiniLM keeping catalog topics and
dropping the rest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from interests.grounding import Grounder, GroundingConfig, catalog_vocabulary, interest_vector
from tests.helpers import SHOES_AND_KITCHEN


def test_vocabulary_is_categories_styles_and_frequent_words() -> None:
    vocab = catalog_vocabulary(SHOES_AND_KITCHEN, GroundingConfig(min_items=2))
    assert vocab[:2] == ["footwear", "housewares"]
    assert {"boot", "sneaker", "kitchen", "bowls"} <= set(vocab)
    assert "kitchen" in vocab and "for" not in vocab  # frequent word kept, stopword not
    assert "trails" not in vocab  # in one item only


def test_titles_and_kind_names_join_the_vocabulary() -> None:
    films = pd.DataFrame({"item_id": ["1", "2"], "name": ["Star Wars", "Blade Runner"],
                          "category": ["Sci-Fi", "Film-Noir"], "style": ["Action", "Sci-Fi"],
                          "categories": ["Sci-Fi|Action|Adventure", "Film-Noir|Sci-Fi"]})
    full = catalog_vocabulary(films, GroundingConfig(min_items=1))
    assert {"star wars", "blade runner", "adventure", "film-noir", "sci-fi"} <= set(full)
    short = catalog_vocabulary(films, GroundingConfig(min_items=1, titles_and_kinds=False))
    assert "star wars" not in short and "adventure" in short  # a word of 1 item, min_items 1


def test_vocabulary_needs_something_to_ground_on() -> None:
    with pytest.raises(ValueError, match="category or description"):
        catalog_vocabulary(pd.DataFrame({"item_id": ["a"]}))


def test_grounding_keeps_catalog_topics_and_drops_the_rest(grounder: Grounder) -> None:
    kept, terms, vecs, dropped = grounder.ground(["hiking boots", "kitchen knives",
                                                  "quantum chromodynamics"])
    assert kept == ["hiking boots", "kitchen knives"]
    # the nearest term may be a kind, a word or an item's title
    assert terms[0] in ("boot", "footwear", "trail hiking boot")
    assert terms[1] in ("kitchen", "knife", "housewares") or "knife" in terms[1]
    assert dropped == 1 and vecs.shape == (2, 384)


def test_interest_vector_is_a_unit_mean() -> None:
    v = interest_vector(np.array([[1.0, 0.0], [0.0, 1.0]], np.float32))
    np.testing.assert_allclose(v, [2 ** -0.5, 2 ** -0.5], rtol=1e-6)


