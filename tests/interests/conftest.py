"""Fixtures of the interest tests: a grounder over the shoes-and-kitchen catalog with the
real MiniLM."""

from __future__ import annotations

import pytest

from interests.grounding import Grounder, GroundingConfig, catalog_vocabulary
from tests.helpers import SHOES_AND_KITCHEN
from train.encoders import TextEncoder


@pytest.fixture(scope="session")
def grounder(minilm: TextEncoder) -> Grounder:
    return Grounder(minilm, catalog_vocabulary(SHOES_AND_KITCHEN, GroundingConfig(min_items=2)),
                    GroundingConfig())
