"""Field parsers that work a column at a time.

Each parser takes one source column as a pyarrow array and returns `Parsed`: the values, and
for each row whether it failed and why. A column read from a text file arrives as strings; a
column read from parquet arrives with its own type and is used as that type: an integer
rating is compared as a number, a timestamp column gives its instants, a list column its
names, and nothing goes through text unless its meaning is text (ids, names) or it holds a
label spelled as words (M/F, event types).

Strings are parsed once per distinct value (`per_value`): a column of a million ratings has
ten distinct texts, a timestamp column a few thousand.

Reasons name the source value as the file holds it (`'five' is not a number`), so a bad row
in the report can be found in the file.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MAX_SECONDS = 95_617_584_000  # 5000-01-01: anything later is taken for milliseconds


class Skip(Exception):
    """One value that does not parse: (column, reason)."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(column, reason)
        self.column, self.reason = column, reason


@dataclass
class Parsed:
    """One column parsed: `values[i]` is meaningful where `bad[i]` is False; `reasons[i]` says
    why row i did not parse (None where it did)."""

    values: np.ndarray
    bad: np.ndarray  # (N,) bool
    reasons: np.ndarray  # (N,) object


Parser = Callable[[pa.Array, str], Parsed]


# --- Scalar rules: one text value, as a CSV holds it -----------------------------------------

def text_of(value: object) -> str:
    """A parquet or JSON value as the text a CSV would hold, for messages and for fields whose
    meaning is text: null is empty, 3.0 is "3" (ids with a null among them are floats in
    pandas-written files), dates are ISO 8601."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def int_text(value: str, column: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise Skip(column, f"{value!r} is not an integer") from None


def number_text(value: str, column: str) -> float:
    try:
        x = float(value.strip())
    except ValueError:
        raise Skip(column, f"{value!r} is not a number") from None
    if not math.isfinite(x):
        raise Skip(column, f"{value!r} is not a finite number")
    return x


def token_text(value: str, column: str) -> str:
    value = value.strip()
    if not value:
        raise Skip(column, "empty")
    return value


GENDERS = {"M": "M", "F": "F", "MALE": "M", "FEMALE": "F"}


def gender_text(value: str, column: str) -> str:
    value = value.strip().upper()
    if value not in GENDERS:
        raise Skip(column, f"{value!r} is not M, F, male or female")
    return GENDERS[value]


FLAGS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}


def flag_text(value: str, column: str) -> int:
    try:
        return FLAGS[value.strip().lower()]
    except KeyError:
        raise Skip(column, f"{value!r} is not 0 or 1") from None


def _seconds_checked(seconds: int, text: str, column: str) -> int:
    if abs(seconds) > MAX_SECONDS:
        raise Skip(column, f"{text!r} is too large for unix seconds; milliseconds? Convert "
                   "the column to seconds")
    return seconds


def timestamp_text(value: str, column: str) -> int:
    """Seconds since the epoch from unix seconds (int or float) or ISO 8601 text, which is
    taken as UTC unless it names a zone. A number is never read as a date (20240131 is
    seconds), so a column of unix times cannot be misread; one past the year 5000 is taken
    for milliseconds and refused, rather than dating every event millennia ahead."""
    text = token_text(value, column)
    try:
        float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise Skip(column, f"{text!r} is neither unix seconds nor an ISO 8601 date"
                       ) from None
        return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())
    return _seconds_checked(math.floor(number_text(text, column)), text, column)


def price_text(value: str, column: str) -> float:
    """0.0 where empty: most catalogs leave some prices out, and the models read 0 as none."""
    if not value.strip():
        return 0.0
    x = number_text(value.strip().removeprefix("$"), column)
    if x < 0:
        raise Skip(column, f"{value!r} is a negative price")
    return x


def names_text(value: str, column: str) -> list[str]:
    """Names from "['Fiction', 'History']" (a Python list written as text, as the Amazon data
    has them) or from "Fiction|History"; empty gives []."""
    text = value.strip()
    if not text.startswith("["):
        return [p.strip() for p in text.split("|") if p.strip()]
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        names = None
    if not isinstance(names, list | tuple):
        raise Skip(column, f"{text[:60]!r} looks like a list but does not parse as one")
    return [str(n).strip() for n in names if str(n).strip()]


# --- Columns ---------------------------------------------------------------------------------

def _flat(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def is_text(arr: pa.Array) -> bool:
    return pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)


def _is_number(arr: pa.Array) -> bool:
    return pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)


def per_value(rule: Callable[[str, str], Any], dtype: Any = object) -> Parser:
    """A parser applying a scalar text `rule` once per distinct value of the column (typed
    values are first written as a CSV would hold them, see `text_of`)."""

    def parse(arr: pa.Array, column: str) -> Parsed:
        arr = _flat(arr)
        encoded = pc.dictionary_encode(arr)
        idx = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)  # N, -1 = null
        distinct = [text_of(v) for v in encoded.dictionary.to_pylist()] + [""]  # null last
        values = np.empty(len(distinct), dtype=object)
        bad = np.zeros(len(distinct), bool)
        reasons = np.full(len(distinct), None, dtype=object)
        for k, v in enumerate(distinct):
            try:
                values[k] = rule(v, column)
            except Skip as e:
                bad[k], reasons[k] = True, e.reason
        out = values[idx]
        if dtype is not object:
            out = np.where(bad[idx], 0, out).astype(dtype)
        return Parsed(out, bad[idx], reasons[idx])

    return parse


def _numeric(arr: pa.Array, nan: float = np.nan) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, null mask) of a numeric column."""
    null = arr.is_null().to_numpy(zero_copy_only=False)
    x = arr.cast(pa.float64()).fill_null(nan).to_numpy(zero_copy_only=False)
    return x, null


def _reasons(arr: pa.Array, bad: np.ndarray, message: Callable[[str], str]) -> np.ndarray:
    out = np.full(len(bad), None, dtype=object)
    for i in np.flatnonzero(bad):
        out[i] = message(text_of(arr[int(i)].as_py()))
    return out


def token(arr: pa.Array, column: str) -> Parsed:
    """Non-empty text with surrounding space removed: ids, names."""
    arr = _flat(arr)
    if not is_text(arr):
        return per_value(token_text)(arr, column)
    t = pc.utf8_trim_whitespace(arr.fill_null(""))
    values = t.to_numpy(zero_copy_only=False).astype(object)
    bad = pc.equal(t, "").to_numpy(zero_copy_only=False)
    return Parsed(values, bad, np.where(bad, "empty", None).astype(object))


def text(arr: pa.Array, strip: bool = True) -> np.ndarray:
    """(N,) str of a free-text column; never bad (null is "")."""
    arr = _flat(arr)
    if not is_text(arr):
        arr = pa.array([text_of(v) for v in arr.to_pylist()], pa.string())
    arr = arr.fill_null("")
    if strip:
        arr = pc.utf8_trim_whitespace(arr)
    return arr.to_numpy(zero_copy_only=False).astype(object)


def integer(arr: pa.Array, column: str) -> Parsed:
    arr = _flat(arr)
    if not _is_number(arr):
        return per_value(int_text, np.int64)(arr, column)
    x, null = _numeric(arr)
    bad = null | ~np.isfinite(x) | (np.floor(x) != x)
    return Parsed(np.where(bad, 0, x).astype(np.int64), bad,
                  _reasons(arr, bad, lambda v: f"{v!r} is not an integer"))


def number(arr: pa.Array, column: str) -> Parsed:
    arr = _flat(arr)
    if not _is_number(arr):
        return per_value(number_text, np.float64)(arr, column)
    x, null = _numeric(arr)
    bad = null | ~np.isfinite(x)
    return Parsed(np.where(bad, 0.0, x), bad, _reasons(
        arr, bad, lambda v: f"{v!r} is not a number" if not v or v.lower() == "nan"
        else f"{v!r} is not a finite number"))


def flag(arr: pa.Array, column: str) -> Parsed:
    """0/1 from a bool, a number that is 0 or 1, or 0/1/true/false text."""
    arr = _flat(arr)
    if pa.types.is_boolean(arr.type):
        arr = arr.cast(pa.int8())
    if not _is_number(arr):
        return per_value(flag_text, np.int8)(arr, column)
    x, null = _numeric(arr)
    bad = null | ~np.isin(x, (0.0, 1.0))
    return Parsed(np.where(bad, 0, x).astype(np.int8), bad,
                  _reasons(arr, bad, lambda v: f"{v!r} is not 0 or 1"))


def timestamp(arr: pa.Array, column: str) -> Parsed:
    """Seconds since the epoch: a timestamp or date column as its instants (naive ones as
    UTC), a number as unix seconds, text as in `timestamp_text`."""
    arr = _flat(arr)
    if pa.types.is_date(arr.type):
        arr = arr.cast(pa.timestamp("s"))
    if pa.types.is_timestamp(arr.type):
        null = arr.is_null().to_numpy(zero_copy_only=False)
        per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[arr.type.unit]
        raw = pc.cast(arr, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        return Parsed(raw // per_second, null, np.where(null, "empty", None).astype(object))
    if not _is_number(arr):
        return per_value(timestamp_text, np.int64)(arr, column)
    x, null = _numeric(arr)
    seconds = np.floor(np.where(np.isfinite(x), x, 0.0))
    empty = null
    not_finite = ~null & ~np.isfinite(x)
    too_large = ~null & np.isfinite(x) & (np.abs(seconds) > MAX_SECONDS)
    bad = empty | not_finite | too_large
    reasons = np.full(len(x), None, dtype=object)
    reasons[empty] = "empty"
    for i in np.flatnonzero(not_finite | too_large):
        v = text_of(arr[int(i)].as_py())
        reasons[i] = (f"{v!r} is not a finite number" if not_finite[i] else
                      f"{v!r} is too large for unix seconds; milliseconds? Convert the column "
                      "to seconds")
    return Parsed(np.where(bad, 0, seconds).astype(np.int64), bad, reasons)


def price(arr: pa.Array, column: str) -> Parsed:
    """A non-negative number; 0.0 where empty."""
    arr = _flat(arr)
    if not _is_number(arr):
        return per_value(price_text, np.float64)(arr, column)
    x, _ = _numeric(arr, nan=0.0)
    x = np.where(np.isnan(x), 0.0, x)  # a NaN is an empty cell to pandas
    bad = ~np.isfinite(x) | (x < 0)
    return Parsed(np.where(bad, 0.0, x), bad, _reasons(
        arr, bad, lambda v: f"{v!r} is a negative price" if v.startswith("-")
        and v != "-inf" else f"{v!r} is not a finite number"))


def names(arr: pa.Array, column: str) -> Parsed:
    """A list of names: from a list column, or from text as in `names_text`."""
    arr = _flat(arr)
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        values = np.empty(len(arr), dtype=object)
        for i, v in enumerate(arr.to_pylist()):
            values[i] = [text_of(n).strip() for n in (v or []) if text_of(n).strip()]
        return Parsed(values, np.zeros(len(arr), bool), np.full(len(arr), None, object))
    return per_value(names_text)(arr, column)


def or_empty(values: np.ndarray) -> np.ndarray:
    """An object array of lists with None (an unknown list) replaced by []."""
    out = values.copy()
    for i in np.flatnonzero(np.equal(values, None)):
        out[i] = []
    return out


def missing(arr: pa.Array, na: frozenset[str] = frozenset({""})) -> np.ndarray:
    """(N,) bool: null cells, NaN numbers, and text cells that are one of the lower-case
    markers `na` once stripped and lower-cased ("" is a blank cell)."""
    arr = _flat(arr)
    out = arr.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_floating(arr.type):
        out |= pc.is_nan(arr).fill_null(False).to_numpy(zero_copy_only=False)
    elif is_text(arr):
        cells = pc.utf8_lower(pc.utf8_trim_whitespace(arr.fill_null("")))
        out |= pc.is_in(cells, value_set=pa.array(sorted(na), pa.string())
                        ).to_numpy(zero_copy_only=False)
    return out


def optional(parser: Parser, na: frozenset[str] = frozenset({""})) -> Parser:
    """`parser` where the column has a value; None (not bad) where the cell is null, NaN or
    a missing-value marker of `na` (lower-case; "" is a blank cell)."""

    def parse(arr: pa.Array, column: str) -> Parsed:
        arr = _flat(arr)
        blank = missing(arr, na)
        p = parser(arr, column)
        values = p.values.astype(object)
        values[blank] = None
        return Parsed(values, p.bad & ~blank, np.where(blank, None, p.reasons).astype(object))

    return parse


def choice(mapping: dict[str, Any], dtype: Any = object) -> Parser:
    """One of `mapping`'s keys (surrounding space removed), as its value."""

    def rule(value: str, column: str) -> Any:
        kind = value.strip()
        if kind not in mapping:
            raise Skip(column, f"{kind!r} is not one of {', '.join(mapping)}")
        return mapping[kind]

    return per_value(rule, dtype)
