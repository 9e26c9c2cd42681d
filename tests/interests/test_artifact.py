"""The interest folder: what expand writes, serving reads back, and a folder that is there
but unusable is refused with what to rerun."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from interests.artifact import COLUMNS, USERS_FILE, load_interests, read_results, write_interests
from interests.backends import LLMConfig
from interests.profiles import build_profiles
from interests.stages import generate_batch, ground_batch
from tests.helpers import SHOES_AND_KITCHEN, clicks
from tests.interests.helpers import FakeGrounder, Scripted


def test_an_unusable_interest_folder_is_refused_with_what_to_rerun(tmp_path: Path) -> None:
    assert load_interests(tmp_path / "absent", np.array(["b1"])) is None
    seen = clicks([("u1", "b1", 1)])
    result = ground_batch(generate_batch(build_profiles(SHOES_AND_KITCHEN, seen, ["u1"]),
                                         Scripted('["boots", "shoes", "trail"]'), LLMConfig()),
                          FakeGrounder())
    folder = tmp_path / "interests"
    write_interests(folder, result, ["b1", "b2"], np.eye(2, 4, dtype=np.float32), {})
    ok = load_interests(folder, np.array(["b1", "b2", "k1"]))
    assert ok is not None and set(ok.vectors) == {"u1"} and ok.rows.tolist() == [0, 1]
    # Item vectors from another encoder (3-d against the users' 4-d).
    pq.write_table(pa.table({"item_id": ["b1"], "vector": pa.FixedSizeListArray.from_arrays(
        np.ones(3, np.float32), 3)}), folder / "items.parquet")
    with pytest.raises(ValueError, match="two encoders mixed; rerun `warmstart expand"):
        load_interests(folder, np.array(["b1"]))
    (folder / "items.parquet").unlink()
    with pytest.raises(ValueError, match="is unreadable.*rerun `warmstart expand"):
        load_interests(folder, np.array(["b1"]))


def test_results_keep_every_column_with_its_type(tmp_path: Path) -> None:
    profiles = build_profiles(SHOES_AND_KITCHEN, clicks([("u1", "b1", 1)]), ["u1", "u2"])
    result = ground_batch(generate_batch(profiles, Scripted('["boots", "shoes", "trail"]'),
                                         LLMConfig()), FakeGrounder())
    write_interests(tmp_path / "i", result, ["b1"], np.eye(1, 4, dtype=np.float32), {})
    back = read_results(tmp_path / "i")
    assert list(back.columns) == list(COLUMNS)
    assert back["topics"].iloc[0].tolist() == ["boots", "shoes", "trail"]
    assert back["vector"].iloc[1] is None and back["status"].tolist() == [
        "expanded", "no_history"]
    assert pq.read_schema(tmp_path / "i" / USERS_FILE).field("vector").type == pa.list_(
        pa.float32(), 4)
    with pytest.raises(ValueError, match=r"lack columns \['vector'\]"):
        write_interests(tmp_path / "j", result.drop(columns="vector"), ["b1"],
                        np.eye(1, 4, dtype=np.float32), {})
