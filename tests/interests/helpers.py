"""Stand-ins for the interest tests: a backend that answers from a script, to drive each
failure path, and a grounder that keeps any topic as one fixed 4-d vector."""

from __future__ import annotations

import time

import numpy as np

from interests.grounding import Grounder, GroundingConfig
from interests.prompts import Messages


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


class FakeGrounder(Grounder):
    """4-d unit vectors for any topic: enough to write an interest folder."""

    def __init__(self) -> None:
        class Enc:
            name, dim = "fake", 4

            def encode(self, texts: list[str]) -> np.ndarray:
                v = np.zeros((len(texts), 4), np.float32)
                v[:, 0] = 1.0
                return v

        self.encoder, self.cfg = Enc(), GroundingConfig(threshold=0.0)
        self.terms = np.array(["boots"], dtype=object)
        self.term_vectors = self.encoder.encode(["boots"])
