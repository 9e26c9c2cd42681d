"""Loading Kaggle's Amazon Books Reviews: books joined by title, review texts kept, a review
without a user reported with its line. No test starts Ray."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from flows.layout import read_items, read_reviews, read_users
from flows.load import load
from flows.load.config import LoadConfig
from tests.flows.load.helpers import GENERIC_ARGS, cli, events, generic_src

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

    ev = events(out)
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
    generic_src(tmp_path / "generic")
    cli(["generic", "--src", str(tmp_path / "generic"), "--out", str(out), "--overwrite",
          *GENERIC_ARGS[:2], "--map", "user=User_id,item=Id,rating=review/score",
          "--max-bad-share", "0.5"])
    assert read_reviews(out) is None


