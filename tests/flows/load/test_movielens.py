"""Loading MovieLens-100K: both distributions give the same dataset, split by time, and no
row is skipped without being reported. None of these tests starts Ray."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from flows.layout import Split, available_days, read_interactions, read_items, read_users
from flows.load import load, load_movielens
from flows.load.config import LoadConfig
from flows.load.movielens import GROUPLENS_GENRES
from flows.load.write import day_buckets
from tests.helpers import DATASETS

REAL = DATASETS / "movielens-100k"

# (id, title, year, genres)
MOVIES = [
    ("1", "Toy Story", 1995, ["Animation", "Children's", "Comedy"]),
    ("2", "GoldenEye", 1995, ["Action", "Adventure", "Thriller"]),
    ("3", "Four Rooms", 1995, ["Thriller"]),
    ("4", "Nosferatu", 1922, ["Horror"]),
    ("5", "Get Shorty", 1995, ["Action", "Comedy", "Drama"]),
]
PEOPLE = [("1", 24, "M", "technician", "85711"), ("2", 53, "F", "other", "94043"),
          ("3", 23, "M", "writer", "32067"), ("4", 33, "F", "artist", "15213")]
T0 = 881_250_949  # 1997-12-04 15:55:49 UTC, a Thursday


def _ratings() -> list[tuple[str, str, int, int]]:
    """28 ratings (2 per day bucket), one per distinct hour, in shuffled file order."""
    rows = [(str(n % 4 + 1), str(n % 5 + 1), n % 5 + 1, T0 + 3_700 * n) for n in range(28)]
    order = np.random.default_rng(0).permutation(len(rows))
    return [rows[i] for i in order]


BAD_AFTER = 10  # the malformed rating comes after this many good ones


def write_fake(folder: Path, fmt: str) -> Path:
    """A tiny MovieLens in `fmt` ("atomic" or "grouplens") with one malformed rating line."""
    folder.mkdir(parents=True, exist_ok=True)
    ratings = [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in _ratings()]
    ratings.insert(BAD_AFTER, "3\t2\tfive\t881250949")  # rating is not a number
    if fmt == "atomic":
        (folder / "ml-100k.inter").write_text(
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
            + "".join(line + "\n" for line in ratings))
        (folder / "ml-100k.item").write_text(
            "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
            + "".join(f"{i}\t{t}\t{y}\t{' '.join(g)}\n" for i, t, y, g in MOVIES))
        (folder / "ml-100k.user").write_text(
            "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
            + "".join("\t".join(map(str, p)) + "\n" for p in PEOPLE))
    else:
        (folder / "u.data").write_text("".join(line + "\n" for line in ratings))
        (folder / "u.item").write_bytes("".join(
            f"{i}|{t} ({y})|01-Jan-{y}||http://imdb/{i}|"
            + "|".join("1" if g in genres else "0" for g in GROUPLENS_GENRES) + "\n"
            for i, t, y, genres in MOVIES).encode("latin-1"))
        (folder / "u.user").write_text("".join("|".join(map(str, p)) + "\n" for p in PEOPLE))
    return folder


def _load(src: Path, out: Path, overwrite: bool = False, max_bad_share: float = 0.1) -> dict:
    """Tolerates the fake's one bad line in 29 (the default 1% would stop the load)."""
    return load(LoadConfig(src=src, out=out, overwrite=overwrite, max_bad_share=max_bad_share))


@pytest.mark.parametrize("fmt", ["atomic", "grouplens"])
def test_layout_reads_back_with_labels_and_context(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "data"
    _load(write_fake(tmp_path / "src", fmt), out)

    items = read_items(out)
    assert list(items["item_id"]) == ["1", "2", "3", "4", "5"]
    toy = items.iloc[0]
    assert (toy["name"], toy["category"], toy["style"], toy["price"]) == (
        "Toy Story", "Animation", "Children's", 0.0)
    assert toy["description"] == "Toy Story (1995). Genres: Animation, Children's, Comedy."
    assert items.set_index("item_id").loc["3", "style"] == "none"  # a single genre
    users = read_users(out)
    assert users.loc["2", "age"] == 53 and users.loc["2", "gender"] == "F"
    assert users.loc["4", "occupation"] == "artist"

    assert available_days(out) == list(range(14))
    got = read_interactions(out, tuple(range(14)))
    assert len(got) == 28 and (got["device"] == "unknown").all()
    want = pd.DataFrame(_ratings(), columns=["user_id", "item_id", "rating", "t"])
    got["t"] = got["ts"].astype("datetime64[s]").astype(np.int64)
    both = got.merge(want, on=["user_id", "item_id", "t"], validate="one_to_one")
    assert len(both) == 28
    assert (both["label"] == (both["rating"] >= 4)).all()  # 4 and 5 are positive
    stamp = [datetime.fromtimestamp(t, UTC) for t in both["t"]]
    assert list(both["hour"]) == [s.hour for s in stamp]
    assert list(both["weekday"]) == [s.weekday() for s in stamp]


def test_both_formats_give_the_same_dataset(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _load(write_fake(tmp_path / "atomic", "atomic"), a)
    _load(write_fake(tmp_path / "grouplens", "grouplens"), b)
    pd.testing.assert_frame_equal(read_items(a), read_items(b))
    pd.testing.assert_frame_equal(read_users(a), read_users(b))
    days = tuple(range(14))
    pd.testing.assert_frame_equal(read_interactions(a, days), read_interactions(b, days))


def test_days_are_equal_count_buckets_in_time_order(tmp_path: Path) -> None:
    out = tmp_path / "data"
    report = _load(write_fake(tmp_path / "src", "atomic"), out)
    assert report["per_day"] == [2] * 14
    ts = [read_interactions(out, (d,))["ts"] for d in range(14)]
    for k in range(13):
        assert ts[k].max() <= ts[k + 1].min()
    # The standard split is then a time split: the test days are the latest 2/14.
    test = read_interactions(out, Split().test)["ts"]
    train = read_interactions(out, Split().train)["ts"]
    assert len(test) == 4 and train.max() <= test.min()


def test_day_buckets_keep_ties_in_order() -> None:
    ts = np.array([5, 1, 5, 5, 2, 9, 5])  # 7 events into 3 buckets of 3, 2, 2
    day = day_buckets(ts, 3)
    assert np.bincount(day).tolist() == [3, 2, 2]
    for k in range(2):
        assert ts[day == k].max() <= ts[day == k + 1].min()


@pytest.mark.parametrize(("fmt", "file", "line"), [("atomic", "ml-100k.inter", BAD_AFTER + 2),
                                                  ("grouplens", "u.data", BAD_AFTER + 1)])
def test_malformed_line_is_reported_and_the_rest_loaded(tmp_path: Path, fmt: str,
                                                        file: str, line: int) -> None:
    out = tmp_path / "data"
    report = _load(write_fake(tmp_path / "src", fmt), out)
    # The header is line 1 of the atomic file, so its bad line is one further down.
    reason = "'five' is not a number" if fmt == "atomic" else "'five' is not an integer"
    assert report["bad"] == [{"file": file, "line": line, "column": "rating",
                              "reason": reason}]
    assert report["summary"] == [{"file": file, "column": "rating", "action": "row skipped",
                                  "reason": reason.replace("'five'", "…"), "count": 1,
                                  "first_line": line, "example": reason}]
    assert json.loads((out / "load_report.json").read_text())["bad"] == report["bad"]
    assert report["interactions"] == 28 and report["rows_read"][file] == 29


def test_missing_fields_and_unknown_ids_are_reported(tmp_path: Path) -> None:
    src = write_fake(tmp_path / "src", "grouplens")
    with (src / "u.data").open("a") as f:
        f.write("1\t99\t5\t881250950\n")  # line 30: no item 99
        f.write("1\t2\t5\n")  # line 31: no timestamp
    with (src / "u.item").open("a", encoding="latin-1") as f:
        f.write("6|Short line|01-Jan-1995\n")  # line 6: 3 of 24 fields
    report = _load(src, tmp_path / "data", max_bad_share=0.2)
    # A line too short for its columns is malformed and skipped; a film u.item lacks keeps
    # its rating, the film added with no attributes.
    bad = {(b["file"], b["line"], b["column"]) for b in report["bad"]}
    assert bad == {("u.data", BAD_AFTER + 1, "rating"), ("u.data", 31, "timestamp"),
                   ("u.item", 6, "video_release_date")}
    assert [(c["file"], c["line"], c["column"]) for c in report["created"]] == [
        ("u.data", 30, "item_id")]
    assert report["interactions"] == 29 and report["items"] == 6


def test_too_many_bad_rows_stop_the_load(tmp_path: Path) -> None:
    src = write_fake(tmp_path / "src", "atomic")  # 1 bad of 29 ratings is above 1%
    with pytest.raises(ValueError, match=r"ml-100k.inter: 1 of 29 rows do not parse .*"
                                         r"ml-100k.inter:12: column rating"):
        load_movielens(src, tmp_path / "data")
    assert not (tmp_path / "data").exists()  # nothing half-written


def test_format_mismatch_names_what_was_expected(tmp_path: Path) -> None:
    src = write_fake(tmp_path / "src", "grouplens")
    (src / "u.item").unlink()
    with pytest.raises(ValueError, match=r"expected either ml-100k.inter, ml-100k.item, "
                                         r"ml-100k.user \(RecBole atomic\) or u.data, u.item, "
                                         r"u.user \(GroupLens\); found \['u.data', 'u.user'\]"):
        _load(src, tmp_path / "data")
    # Atomic file names over GroupLens content: the header is not a typed one.
    odd = tmp_path / "odd"
    odd.mkdir()
    for name, atomic in (("u.data", "ml-100k.inter"), ("u.user", "ml-100k.user")):
        (odd / atomic).write_bytes((src / name).read_bytes())
    (odd / "ml-100k.item").write_text("1|Toy Story (1995)|01-Jan-1995\n")
    with pytest.raises(ValueError, match=r"ml-100k.item: header .* lacks column\(s\) "
                                         r"\['item_id', .*RecBole atomic"):
        _load(odd, tmp_path / "data")


def test_existing_dataset_is_not_replaced_unasked(tmp_path: Path) -> None:
    src, out = write_fake(tmp_path / "src", "atomic"), tmp_path / "data"
    (out / "truth").mkdir(parents=True)  # a generated dataset, with its ground truth
    (out / "truth" / "world.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds truth; pass --overwrite"):
        _load(src, out)
    assert (out / "truth" / "world.json").read_text() == "{}"
    _load(src, out, overwrite=True)
    # The old ground truth would describe another world: it must go with the old data.
    assert not (out / "truth").exists() and len(read_items(out)) == 5
    with pytest.raises(ValueError, match="already holds items.parquet, users.parquet, "
                                         "interactions, load_report.json"):
        _load(src, out)


def test_cli_loads_and_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    src, out = write_fake(tmp_path / "src", "grouplens"), tmp_path / "data"
    argv = ["load", "movielens", "--src", str(src), "--out", str(out), "--max-bad-share", "0.1"]
    assert main(argv) == 0
    assert "loaded 28 interactions" in capsys.readouterr().out
    assert main(argv) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


@pytest.mark.skipif(not (REAL / "ml-100k.inter").exists(), reason=f"no MovieLens at {REAL}")
def test_real_movielens_100k(tmp_path: Path) -> None:
    out = load_movielens(REAL, tmp_path / "data")
    report = json.loads((out / "load_report.json").read_text())
    ratings = read_interactions(out, tuple(range(14)))
    assert report["rows_read"]["ml-100k.inter"] == 100_000
    assert len(ratings) == 100_000 - sum(b["file"] == "ml-100k.inter" for b in report["bad"])
    assert len(read_users(out)) == 943 and len(read_items(out)) == 1682
    assert ratings["user_id"].nunique() == 943
    assert abs(len(read_interactions(out, Split().test)) / len(ratings) - 2 / 14) < 1e-3
