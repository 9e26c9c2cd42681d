"""The candidates of one request as one arrays object: catalog rows and, per row, which
retrieval sources found it. Every stage after retrieval takes one and returns one, so no
stage keeps a mask parallel to another stage's arrays.

Sources are bits, so a row found by two sources carries both and a merge is a bitwise or.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TWO_TOWER, INTERESTS, POPULAR, ITEM_ITEM, DEMOGRAPHIC = 1, 2, 4, 8, 16
SOURCES = {TWO_TOWER: "two_tower", ITEM_ITEM: "item_item", INTERESTS: "interests",
           POPULAR: "popular", DEMOGRAPHIC: "demographic"}


@dataclass(frozen=True)
class Candidates:
    rows: np.ndarray  # (N,) int64 catalog rows, unique
    source: np.ndarray  # (N,) uint8 bits of SOURCES

    @classmethod
    def of(cls, rows: np.ndarray, source: int) -> Candidates:
        rows = np.asarray(rows, np.int64)
        return cls(rows, np.full(len(rows), source, np.uint8))

    @classmethod
    def empty(cls) -> Candidates:
        return cls.of(np.zeros(0, np.int64), 0)

    def __len__(self) -> int:
        return len(self.rows)

    def merge(self, other: Candidates) -> Candidates:
        """The union of both, rows in ascending order, each row's sources or-ed."""
        if not len(other):
            return self
        if not len(self):
            return other
        rows, at = np.unique(np.concatenate([self.rows, other.rows]), return_inverse=True)
        source = np.zeros(len(rows), np.uint8)
        np.bitwise_or.at(source, at, np.concatenate([self.source, other.source]))
        return Candidates(rows, source)

    def keep(self, mask: np.ndarray) -> Candidates:
        return Candidates(self.rows[mask], self.source[mask])

    def has(self, source: int) -> np.ndarray:
        """(N,) bool: rows that `source` found."""
        return (self.source & source) != 0

    def counts(self) -> dict[str, int]:
        """How many candidates each source found (a candidate found by two counts twice)."""
        return {name: int(self.has(bit).sum()) for bit, name in SOURCES.items()}

    def source_names(self) -> list[str]:
        """Per row, its sources joined with '+', in SOURCES order."""
        names: dict[int, str] = {}
        out = []
        for bits in self.source.tolist():
            if bits not in names:
                names[bits] = "+".join(n for b, n in SOURCES.items() if bits & b)
            out.append(names[bits])
        return out
