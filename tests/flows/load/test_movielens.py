"""Loading MovieLens: ML-100K in both distributions gives the same dataset, split by time, and
no row is skipped without being reported; every other release (ML-1M and ML-10M `.dat`,
ML-20M CSV, RecBole atomic files of any of them) is read from tiny fixtures whose tables are
known. None of these tests starts Ray."""

from __future__ import annotations

import csv
import json
import re
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
from tests.flows.load.helpers import events, found
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
    assert_same_dataset(a, b)


def assert_same_dataset(a: Path, b: Path) -> None:
    """Two loaded folders hold the same items, users and interactions."""
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
    with pytest.raises(ValueError, match=r"u.data, u.item and optionally u.user \(GroupLens "
                                         r"ML-100K\); .* found \['u.data', 'u.user'\]"):
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


# --- The other releases: ML-1M, ML-10M, ML-20M and their RecBole atomic files ----------------

# (id, title, year, genres): a latin-1 title holding a comma, and a film without genres
FILMS = [("1", "Toy Story", 1995, ["Animation", "Children's", "Comedy"]),
         ("2", "Misérables, Les", 1995, ["Drama", "War"]),
         ("3", "Pull My Daisy", 1958, [])]
# ML-1M's users: (id, gender, age code, occupation code, zip); 10 is "K-12 student"
FANS = [("1", "F", 1, 10, "48067"), ("2", "M", 56, 16, "70072")]
# (user, item, rating, ts): user 3 is in no users file
STARS = [("1", "1", 5.0, T0), ("1", "2", 3.0, T0 + 60), ("2", "1", 4.0, T0 + 3_600),
         ("2", "3", 2.0, T0 + 7_200), ("3", "2", 4.0, T0 + 86_400)]
HALF_STARS = [("1", "1", 4.5, T0), ("1", "2", 3.5, T0 + 60), ("2", "1", 4.0, T0 + 3_600),
              ("2", "3", 0.5, T0 + 7_200), ("3", "2", 3.5, T0 + 86_400)]


def _genre_cell(genres: list[str], sep: str) -> str:
    return sep.join(genres) if genres else "(no genres listed)"


def _lines(path: Path, rows: list[str], encoding: str = "utf-8") -> None:
    path.write_bytes("".join(r + "\n" for r in rows).encode(encoding))


def write_release(folder: Path, release: str) -> list[tuple[str, str, float, int]]:
    """`release` as GroupLens or RecBole ship it; returns the ratings written."""
    folder.mkdir(parents=True)
    stars = HALF_STARS if release in ("ml-10m", "ml-20m", "atomic-ml-20m") else STARS
    if release in ("ml-1m", "ml-10m"):
        # ML-1M is latin-1; ML-10M's movies.dat is read as utf-8 here, to check both.
        _lines(folder / "movies.dat", [f"{i}::{t} ({y})::{_genre_cell(g, '|')}"
                                       for i, t, y, g in FILMS],
               "latin-1" if release == "ml-1m" else "utf-8")
        _lines(folder / "ratings.dat", [f"{u}::{i}::{r:g}::{t}" for u, i, r, t in stars])
        if release == "ml-1m":
            _lines(folder / "users.dat", ["::".join(map(str, f)) for f in FANS])
        else:
            _lines(folder / "tags.dat", [f"1::1::pixar::{T0}"])  # not read
    elif release == "ml-20m":
        with (folder / "movies.csv").open("w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerows(
                [("movieId", "title", "genres")]
                + [(i, f"{t} ({y})", _genre_cell(g, "|")) for i, t, y, g in FILMS])
        _lines(folder / "ratings.csv", ["userId,movieId,rating,timestamp"]
               + [f"{u},{i},{r:.1f},{t}" for u, i, r, t in stars])
        _lines(folder / "links.csv", ["movieId,imdbId,tmdbId", "1,0114709,862"])  # not read
    else:  # RecBole atomic: atomic-ml-1m with ml-1m.user, atomic-ml-20m without
        name = release.removeprefix("atomic-")
        _lines(folder / f"{name}.inter", ["user_id:token\titem_id:token\trating:float\t"
                                          "timestamp:float"]
               + [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in stars])
        _lines(folder / f"{name}.item", ["item_id:token\tmovie_title:token_seq\t"
                                         "release_year:token\tgenre:token_seq"]
               + [f"{i}\t{t}\t{y}\t{' '.join(g)}" for i, t, y, g in FILMS])
        if name == "ml-1m":
            _lines(folder / f"{name}.user", ["user_id:token\tage:token\tgender:token\t"
                                             "occupation:token\tzip_code:token"]
                   + [f"{u}\t{a}\t{g}\t{o}\t{z}" for u, g, a, o, z in FANS])
    return stars


RELEASES = {  # release: (format, ratings file, has a users file)
    "ml-1m": ("grouplens-dat", "ratings.dat", True),
    "ml-10m": ("grouplens-dat", "ratings.dat", False),
    "ml-20m": ("grouplens-csv", "ratings.csv", False),
    "atomic-ml-1m": ("recbole-atomic", "ml-1m.inter", True),
    "atomic-ml-20m": ("recbole-atomic", "ml-20m.inter", False),
}


@pytest.mark.parametrize("release", RELEASES)
def test_every_release_gives_its_tables(tmp_path: Path, release: str) -> None:
    out = tmp_path / "data"
    stars = write_release(tmp_path / release, release)
    report = load(LoadConfig(src=tmp_path / release, out=out))
    fmt, ratings_file, has_users = RELEASES[release]
    assert report["format"] == fmt and report["bad"] == [] and report["dropped"] == []

    items = read_items(out).set_index("item_id")
    assert list(items.index) == ["1", "2", "3"]
    got = items[["name", "year", "genres", "category", "style"]].to_records().tolist()
    assert got == [("1", "Toy Story", 1995, "Animation Children's Comedy", "Animation",
                    "Children's"),
                   ("2", "Misérables, Les", 1995, "Drama War", "Drama", "War"),
                   ("3", "Pull My Daisy", 1958, "unknown", "unknown", "none")]
    assert items.loc["2", "description"] == "Misérables, Les (1995). Genres: Drama, War."

    users = read_users(out)
    assert sorted(users.index) == ["1", "2", "3"]
    if has_users:  # user 3 rated but is not in the users file: kept, noted as created
        assert users.loc[["1", "2"], ["age", "gender", "occupation"]].values.tolist() == [
            [1, "F", "K-12 student"], [56, "M", "self-employed"]]
        line = 5 + (ratings_file.endswith(".inter"))  # the header is line 1 of atomic files
        assert found(report, "created") == [(ratings_file, line, "user_id")]
    else:  # no users file: every user is made from the ratings, with no attributes
        assert report["created"] == []
    unknown = ["3"] if has_users else ["1", "2", "3"]
    assert users.loc[unknown, "age"].isna().all() and (users.loc[unknown, "gender"] == "").all()

    ev = events(out)
    assert len(ev) == len(stars)
    for u, i, rating, t in stars:
        assert (ev.loc[(u, i), "label"], ev.loc[(u, i), "t"]) == (int(rating >= 4.0), t)


def test_both_ml_1m_forms_give_the_same_dataset(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_release(tmp_path / "dat", "ml-1m")
    write_release(tmp_path / "atomic", "atomic-ml-1m")
    load(LoadConfig(src=tmp_path / "dat", out=a))
    load(LoadConfig(src=tmp_path / "atomic", out=b))
    assert_same_dataset(a, b)


def test_like_threshold_applies_to_half_stars(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_release(src, "ml-10m")
    load(LoadConfig(src=src, out=tmp_path / "data", like_threshold=3.5))
    ev = events(tmp_path / "data")
    assert ev["label"].to_dict() == {("1", "1"): 1, ("1", "2"): 1, ("2", "1"): 1,
                                     ("2", "3"): 0, ("3", "2"): 1}


@pytest.mark.parametrize(("release", "file", "bad", "line"), [
    ("ml-10m", "ratings.dat", "2::1::four::881250949", 6),
    ("ml-20m", "ratings.csv", "2,1,four,881250949", 7),  # after the header line
    ("atomic-ml-20m", "ml-20m.inter", "2\t1\tfour\t881250949", 7),
])
def test_bad_rating_in_any_release_names_file_line_and_column(
        tmp_path: Path, release: str, file: str, bad: str, line: int) -> None:
    src = tmp_path / "src"
    write_release(src, release)
    with (src / file).open("a") as f:
        f.write(bad + "\n")
    report = load(LoadConfig(src=src, out=tmp_path / "data", max_bad_share=0.5))
    assert report["bad"] == [{"file": file, "line": line, "column": "rating",
                              "reason": "'four' is not a number"}]
    assert report["interactions"] == 5


def test_unknown_folder_names_what_each_layout_expects(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "ratings.dat").write_text(f"1::1::5::{T0}\n")  # movies.dat is missing
    (src / "notes.txt").write_text("")
    with pytest.raises(ValueError) as e:
        _load(src, tmp_path / "data")
    message = str(e.value)
    assert message.startswith(f"{src} is not a MovieLens folder")
    for expected in ("*.inter, *.item and optionally *.user (RecBole atomic",
                     "u.data, u.item and optionally u.user (GroupLens ML-100K)",
                     "ratings.dat, movies.dat and optionally users.dat (GroupLens ML-1M or "
                     "ML-10M)", "ratings.csv, movies.csv (GroupLens ML-20M, ML-25M or "
                     "ml-latest)", "found ['notes.txt', 'ratings.dat']"):
        assert expected in message
    # The folder above a release: the error points at the one inside it.
    write_release(tmp_path / "ml-20m", "ml-20m")
    with pytest.raises(ValueError, match=re.escape(f"pass --src {tmp_path / 'ml-20m'}, which")):
        _load(tmp_path, tmp_path / "data")


def test_several_atomic_datasets_in_one_folder_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_release(src, "atomic-ml-1m")
    for suffix in ("inter", "item"):
        (src / f"ml-100k.{suffix}").write_bytes((src / f"ml-1m.{suffix}").read_bytes())
    with pytest.raises(ValueError, match=r"several RecBole .* \(ml-100k, ml-1m\); point --src"):
        _load(src, tmp_path / "data")
