"""Loading your own files (generic), Amazon Books Reviews and the Retail Demo Store: the rows
that do not parse become bad rows with their file, line and column, and the rest reads back
through flows.data. Every fixture is written here with its answer known. No test starts Ray."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from flows.data import available_days, read_interactions, read_items, read_users
from flows.load import (
    RDS_LABELS,
    EventColumns,
    ItemColumns,
    LoadConfig,
    load,
    main,
    read_reviews,
)
from flows.synthetic import load_catalog

REAL_RDS = Path(__file__).parents[2] / "shared/datasets/retail-demo-store/products.yaml"
T9 = 1_000_000_000  # 2001-09-09T01:46:40Z


def _events(out: Path) -> pd.DataFrame:
    """All loaded events, with ts back in unix seconds, keyed by (user_id, item_id)."""
    ev = read_interactions(out, tuple(available_days(out)))
    ev["t"] = ev["ts"].astype("datetime64[s]").astype(np.int64)
    return ev.set_index(["user_id", "item_id"]).sort_index()


def _bad(report: dict) -> list[tuple[str, int, str]]:
    return [(b["file"], b["line"], b["column"]) for b in report["bad"]]


# --- generic --------------------------------------------------------------------------------

RATINGS_CSV = f"""User_id,Id,review/score,review/time,review/text
u1,b1,5,{T9 - 1},"Loved it"
u2,b2,2,2001-09-09T01:46:40Z,"Too long,
and slow"
u1,b3,4.5,{T9 + 2},
u2,b1,five,{T9 + 3},bad rating
u3,b2,3,yesterday,bad timestamp
u3,b9,5,{T9 + 5},no such book
u3,b3,4,{T9 + 6},"Short, \"\"sharp\"\"\"
"""
BOOKS_CSV = """Id,Title,description,categories,price
b1,"Dune, Part 1","Sand, spice.","['Fiction', 'Classics']",9.99
b2,Cooking,,Food|Home,
b3,Plain,Short.,,
"""
PEOPLE_CSV = "uid,years,sex,city\nu1,34,F,Oslo\nu2,,male,Rome\nu3,51,,Lima\n"
GENERIC_ARGS = [
    "--interactions", "ratings.csv", "--items", "books.csv", "--users", "people.csv",
    "--map", "user=User_id,item=Id,rating=review/score,ts=review/time,review=review/text",
    "--item-map", "id=Id,title=Title,text=description,categories=categories,price=price",
    "--user-map", "id=uid,age=years,gender=sex", "--max-bad-share", "0.5"]


def _generic_src(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, text in (("ratings.csv", RATINGS_CSV), ("books.csv", BOOKS_CSV),
                       ("people.csv", PEOPLE_CSV)):
        (folder / name).write_text(text)
    return folder


def test_generic_csv_bad_rows_have_their_lines_and_the_rest_loads(tmp_path: Path,
                                                                  capsys) -> None:
    src, out = _generic_src(tmp_path / "src"), tmp_path / "data"
    main(["generic", "--src", str(src), "--out", str(out), *GENERIC_ARGS])
    assert "loaded 4 interactions (75.0% positive) and 3 reviews" in capsys.readouterr().out
    report = json.loads((out / "load_report.json").read_text())

    # The quoted field of line 3 runs on to line 4, so the bad rows are on lines 6-8.
    assert _bad(report) == [("ratings.csv", 6, "review/score"), ("ratings.csv", 7, "review/time"),
                            ("ratings.csv", 8, "Id")]
    assert report["bad"][2]["reason"] == "item 'b9' is not in books.csv"
    assert report["rows_read"] == {"books.csv": 3, "people.csv": 3, "ratings.csv": 7}

    ev = _events(out)
    assert list(ev.index) == [("u1", "b1"), ("u1", "b3"), ("u2", "b2"), ("u3", "b3")]
    assert list(ev["label"]) == [1, 1, 0, 1]  # scores 5, 4.5, 2, 4 against 4
    assert list(ev["t"]) == [T9 - 1, T9 + 2, T9, T9 + 6]  # the ISO date is 1e9 seconds

    items = read_items(out).set_index("item_id")
    assert items.loc["b1", ["name", "category", "style", "price", "description",
                            "categories"]].tolist() == [
        "Dune, Part 1", "Fiction", "Classics", 9.99, "Sand, spice.", "Fiction|Classics"]
    assert items.loc["b2", ["category", "style", "price"]].tolist() == ["Food", "Home", 0.0]
    assert items.loc["b3", ["category", "style"]].tolist() == ["unknown", "none"]

    users = read_users(out)
    assert users.loc["u1", ["age", "gender", "city"]].tolist() == [34, "F", "Oslo"]
    assert pd.isna(users.loc["u2", "age"]) and users.loc["u2", "gender"] == "M"
    assert users.loc["u3", "gender"] == ""
    # Training reads ages this way: unknown must come out as NaN, not as an age.
    assert np.isnan(users["age"].to_numpy(dtype=float, na_value=np.nan)).tolist() == [
        False, True, False]

    reviews = read_reviews(out).set_index(["user_id", "item_id"]).sort_index()
    assert reviews["text"].tolist() == ["Loved it", "Too long,\nand slow", 'Short, "sharp"']
    assert reviews["ts"].tolist() == [T9 - 1, T9, T9 + 6] and (reviews["summary"] == "").all()


def test_generic_parquet_with_a_label_column_keeps_file_order(tmp_path: Path) -> None:
    path = tmp_path / "clicks.parquet"
    pd.DataFrame({"user": [7, 8, 9, 7, 8, 9], "item": ["c", "b", "a", "a", "c", "b"],
                  "clicked": [1, 0, 2, 0, 1, 1]}).to_parquet(path)
    out = tmp_path / "data"
    report = load(LoadConfig(
        preset="generic", out=out, interactions_file=path, days=2, max_bad_share=0.5,
        columns=EventColumns(user="user", item="item", label="clicked")))

    # Row 3 (index 2) is "line" 4: parquet rows count as if a header line came first.
    assert report["bad"] == [{"file": "clicks.parquet", "line": 4, "column": "clicked",
                              "reason": "'2' is not 0 or 1"}]
    # No timestamp: days are slices of the file in order, 5 events into 3 + 2.
    first = read_interactions(out, (0,))
    assert list(zip(first["user_id"], first["item_id"], first["label"], strict=True)) == [
        ("7", "c", 1), ("8", "b", 0), ("7", "a", 0)]
    assert len(read_interactions(out, (1,))) == 2
    items = read_items(out)  # made from the ids seen, in order of appearance
    assert list(items["item_id"]) == ["c", "b", "a"] and (items["category"] == "unknown").all()
    users = read_users(out)
    assert list(users.index) == ["7", "8", "9"] and users["age"].isna().all()
    assert read_reviews(out) is None


def test_generic_delimiter_and_encoding_flags(tmp_path: Path) -> None:
    path, out = tmp_path / "events.txt", tmp_path / "data"
    path.write_bytes("user;item;liked;when\nzoë;x;1;2024-01-31\nzoë;y;0;1706659200000\n"
                     .encode("latin-1"))
    args = ["generic", "--interactions", str(path), "--out", str(out), "--encoding", "latin-1",
            "--map", "user=user,item=item,label=liked,ts=when", "--max-bad-share", "0.5"]
    with pytest.raises(ValueError, match=r"header \['user;item;liked;when'\] \(one column: "
                                         r"wrong --delimiter\?\)"):
        main(args)
    main([*args, "--delimiter", ";"])
    report = json.loads((out / "load_report.json").read_text())
    assert _bad(report) == [("events.txt", 3, "when")]  # milliseconds, not seconds
    assert "milliseconds?" in report["bad"][0]["reason"]
    ev = _events(out)
    assert list(ev.index) == [("zoë", "x")] and list(ev["t"]) == [1_706_659_200]  # 2024-01-31


def test_mapping_a_missing_column_fails_before_reading(tmp_path: Path) -> None:
    src, out = _generic_src(tmp_path / "src"), tmp_path / "data"
    cfg = dict(src=src, out=out, preset="generic", interactions_file=Path("ratings.csv"),
               columns=EventColumns(user="User_id", item="Id", rating="review/score"))
    with pytest.raises(ValueError, match=r"books.csv: no column\(s\) \['Cover'\] in its header "
                                         r"\['Id', 'Title', 'description', 'categories', "
                                         r"'price'\]"):
        load(LoadConfig(**cfg, items_file=Path("books.csv"),
                        item_columns=ItemColumns(id="Id", text=("description", "Cover"))))
    with pytest.raises(ValueError, match=r"ratings.csv: no column\(s\) \['score'\]"):
        load(LoadConfig(**cfg | {"columns": EventColumns(user="User_id", item="Id",
                                                           rating="score")}))
    assert not out.exists()
    with pytest.raises(ValueError, match="exactly one of rating=COLUMN"):
        LoadConfig(**cfg | {"columns": EventColumns(user="User_id", item="Id")})
    with pytest.raises(ValueError, match=r"'colour=x' is not KEY=COLUMN with KEY one of id, "
                                         r"title, text, categories, price"):
        ItemColumns.parse("id=Id,colour=x", "--item-map")
    assert ItemColumns.parse("id=Id,text=a,text=b").text == ("a", "b")


# --- amazon-books ---------------------------------------------------------------------------

RATING_HEADER = ["Id", "Title", "Price", "User_id", "profileName", "review/helpfulness",
                 "review/score", "review/time", "review/summary", "review/text"]
SEUSS, ART, SAINTS, LOST = "0826414346", "1882931173", "0595344550", "B000LOST00"
REVIEWS = [  # the 4th line (3rd review) has no User_id
    [SEUSS, "Dr. Seuss: American Icon", "", "A30TK6U7DNS82R", "Kevin Killian", "10/10", "5.0",
     "1095724800", "Really Enjoyed It", "I changed my mind about Dr. Seuss."],
    [SEUSS, "Dr. Seuss: American Icon", "", "A3UH4UZ4RSVO82", "John Granger", "10/11", "4.0",
     "1078790400", "Essential", "People become the books they read."],
    [SEUSS, "Dr. Seuss: American Icon", "", "", "Anonymous", "0/0", "5.0", "1090713600",
     "Good", "Nice."],
    [ART, "Its Only Art If Its Well Hung!", "9.99", "AVCGYZL8FQQTD", 'Jim of Oz "jim-of-oz"',
     "7/7", "4.0", "940636800", "Nice collection", "Only for Julie Strain fans."],
    [SAINTS, "Whispers of the Wicked Saints", "10.95", "A3Q12RK71N74LB", "Book Reader", "1/1",
     "1.0", "1117065600", "not good", "I bought this book because of the praise."],
    [LOST, "A Book Not In Books Data", "", "A30TK6U7DNS82R", "Kevin Killian", "0/0", "3.0",
     "1100000000", "", ""],
    [SAINTS, "Whispers of the Wicked Saints", "10.95", "A30TK6U7DNS82R", "Kevin Killian", "0/0",
     "5.0", "1120000000", "Great, really", "A review\nover two lines."],
]
BOOKS_HEADER = ["Title", "description", "authors", "image", "previewLink", "publisher",
                "publishedDate", "infoLink", "categories", "ratingsCount"]
BOOKS = [
    ["Its Only Art If Its Well Hung!", "", "['Julie Strain']", "http://img/1", "http://p/1", "",
     "1996", "http://i/1", "['Comics & Graphic Novels']", ""],
    ["Dr. Seuss: American Icon", "A look at Seuss's career.", "['Philip Nel']", "", "",
     "A&C Black", "2005-01-01", "", "['Biography & Autobiography']", ""],
    ["Whispers of the Wicked Saints", "Julia's life spins out of control.",
     "['Veronica Haddon']", "", "", "iUniverse", "2005-02", "", "['Fiction', 'Romance']", ""],
    ["Wuthering Heights", "Moors.", "['Emily Bronte']", "", "", "", "1847", "", "['Fiction']",
     "3.0"],
]


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([header, *rows])


def _amazon_src(folder: Path) -> Path:
    folder.mkdir(parents=True)
    _write_csv(folder / "Books_rating.csv", RATING_HEADER, REVIEWS)
    _write_csv(folder / "books_data.csv", BOOKS_HEADER, BOOKS)
    return folder


def test_amazon_books_joins_books_by_title_and_keeps_review_text(tmp_path: Path) -> None:
    out = tmp_path / "data"
    report = load(LoadConfig(src=_amazon_src(tmp_path / "src"), out=out, preset="amazon-books",
                             max_bad_share=0.2))
    assert report["bad"] == [{"file": "Books_rating.csv", "line": 4, "column": "User_id",
                              "reason": "empty"}]
    assert report["rows_read"] == {"books_data.csv": 4, "Books_rating.csv": 7}

    items = read_items(out).set_index("item_id")
    assert sorted(items.index) == sorted([SEUSS, ART, SAINTS, LOST])
    got = items[["category", "style", "price", "description"]].T.to_dict("list")
    assert got == {
        SEUSS: ["Biography & Autobiography", "none", 0.0,
                "A look at Seuss's career. By Philip Nel."],
        ART: ["Comics & Graphic Novels", "none", 9.99, "By Julie Strain."],
        SAINTS: ["Fiction", "Romance", 10.95,
                 "Julia's life spins out of control. By Veronica Haddon."],
        LOST: ["unknown", "none", 0.0, ""],  # not in books_data.csv: its title only
    }
    assert items.loc[LOST, "name"] == "A Book Not In Books Data"

    ev = _events(out)
    assert len(ev) == 6 and ev["label"].sum() == 4  # scores 5, 4, 4, 1, 3, 5
    assert ev.loc[("A3Q12RK71N74LB", SAINTS), "label"] == 0
    users = read_users(out)
    assert len(users) == 4 and users["age"].isna().all() and (users["gender"] == "").all()

    reviews = read_reviews(out)
    assert len(reviews) == 5 and reviews["ts"].dtype == np.int64  # the empty review is left out
    last = reviews.set_index(["user_id", "item_id"]).loc[("A30TK6U7DNS82R", SAINTS)]
    assert (last["summary"], last["text"], last["ts"]) == (
        "Great, really", "A review\nover two lines.", 1_120_000_000)

    # Replacing this dataset with one that has no reviews takes the old reviews away.
    _generic_src(tmp_path / "generic")
    main(["generic", "--src", str(tmp_path / "generic"), "--out", str(out), "--overwrite",
          *GENERIC_ARGS[:2], "--map", "user=User_id,item=Id,rating=review/score",
          "--max-bad-share", "0.5"])
    assert read_reviews(out) is None


# --- retail-demo-store ----------------------------------------------------------------------

PRODUCTS = [
    {"id": "p1", "name": "Trail Boot", "category": "footwear", "style": "boot",
     "description": "Sturdy.", "price": 89.5, "gender_affinity": "M"},
    {"id": "p2", "name": "Pasta Book", "category": "books", "style": "cooking",
     "description": "Recipes.", "price": 20.0},
    {"id": "p3", "name": "Claw Hammer", "category": "tools", "style": "hammer",
     "description": "Heavy.", "price": 15.0},
]
INTERACTIONS = """ITEM_ID,USER_ID,EVENT_TYPE,TIMESTAMP,DISCOUNT
p1,1,ProductViewed,1600000000,No
p1,1,ProductAdded,1600000010,No
p2,2,ProductViewed,1600000020,Yes
p2,2,OrderCompleted,1600000030,Yes
p3,1,ProductClicked,1600000040,No
p9,2,ProductViewed,1600000050,No
p3,3,ProductViewed,1600000060,No
p3,2,CheckoutStarted,1600000070,No
"""


def test_retail_demo_store_labels_the_funnel(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "data"
    src.mkdir()
    (src / "products.yaml").write_text(yaml.safe_dump(PRODUCTS))
    with pytest.raises(FileNotFoundError, match=r"pass --interactions FILE .* run `warmstart "
                                                r"generate --catalog .*products.yaml`"):
        load(LoadConfig(src=src, out=out, preset="retail-demo-store"))
    (src / "interactions.csv").write_text(INTERACTIONS)
    (src / "users.json").write_text(json.dumps([
        {"id": 1, "age": 25, "gender": "F", "persona": "footwear_apparel_outdoors"},
        {"id": "2", "age": None, "gender": "M"}]))
    report = load(LoadConfig(src=src, out=out, preset="retail-demo-store", max_bad_share=0.5))

    assert [(b["line"], b["column"], b["reason"]) for b in report["bad"]] == [
        (6, "EVENT_TYPE", f"'ProductClicked' is not one of {', '.join(RDS_LABELS)}"),
        (7, "ITEM_ID", "item 'p9' is not in products.yaml"),
        (8, "USER_ID", "user '3' is not in users.json")]
    ev = read_interactions(out, tuple(range(14)))
    assert list(zip(ev["item_id"], ev["label"], strict=True)) == [
        ("p1", 0), ("p1", 1), ("p2", 0), ("p2", 1), ("p3", 1)]  # a view is 0, the rest 1
    items = read_items(out)
    assert list(items["item_id"]) == ["p1", "p2", "p3"] and items["price"].tolist() == [
        89.5, 20.0, 15.0]
    users = read_users(out)
    assert users.loc["1", ["age", "gender"]].tolist() == [25, "F"]
    assert pd.isna(users.loc["2", "age"]) and "persona" not in users


@pytest.mark.skipif(not REAL_RDS.exists(), reason=f"no Retail Demo Store catalog at {REAL_RDS}")
def test_real_retail_demo_store_catalog(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "data"
    src.mkdir()
    (src / "products.yaml").write_bytes(REAL_RDS.read_bytes())
    ids = load_catalog(REAL_RDS)["item_id"].to_numpy()
    rng = np.random.default_rng(3)
    kinds = rng.choice(list(RDS_LABELS), size=300, p=[0.8, 0.1, 0.04, 0.03, 0.03])
    frame = pd.DataFrame({"ITEM_ID": rng.choice(ids, 300), "USER_ID": rng.integers(1, 41, 300),
                          "EVENT_TYPE": kinds, "TIMESTAMP": 1_600_000_000 + 60 * np.arange(300)})
    frame.to_csv(src / "interactions.csv", index=False)
    report = load(LoadConfig(src=src, out=out, preset="retail-demo-store"))

    assert report["bad"] == [] and report["items"] == len(ids) == 2465
    ev = read_interactions(out, tuple(range(14)))
    assert len(ev) == 300 and ev["label"].sum() == (kinds != "ProductViewed").sum()
    assert sum(report["per_day"]) == 300 and max(report["per_day"]) <= 22
    assert len(read_items(out)) == 2465
    assert read_users(out)["age"].isna().all()  # no users.json: attributes unknown
