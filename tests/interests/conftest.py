"""Fixtures of the interest tests: a grounder over the shoes-and-kitchen catalog with the
real MiniLM."""

from __future__ import annotations

import pytest

from interests.grounding import Grounder, GroundingConfig, catalog_vocabulary
from tests.helpers import SHOES_AND_KITCHEN


@pytest.fixture(scope="session")
def grounder(minilm) -> Grounder:  # noqa: ANN001 (a TextEncoder)
    return Grounder(minilm, catalog_vocabulary(SHOES_AND_KITCHEN, GroundingConfig(min_items=2)),
                    GroundingConfig())
