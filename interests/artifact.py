"""The interest folder: what `warmstart expand` writes and serving reads, defined once.

    <artifacts>/interests/
        interests.parquet   one row per selected user: status, LLM text, topics before and
                            after grounding, drops, latency, and the interest vector
                            (null for users without one)
        items.parquet       item_id and vector: the catalog in the same encoder's space
        stats.json          counts by status and drop reason, rates, the encoder used

The folder sits beside the published versions (`<artifacts>/interests`), not inside one:
interests depend on the data and the LLM, not on the trained models, so a retrain keeps
them. It is written to a temporary folder and swapped in whole, so a reader never sees two
runs mixed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from index.faiss_index import build_index

log = logging.getLogger(__name__)

FOLDER = "interests"  # under the artifact root
USERS_FILE = "interests.parquet"
ITEMS_FILE = "items.parquet"
STATS_FILE = "stats.json"

# interests.parquet without its `vector` column, whose width is the encoder's.
USER_FIELDS = pa.schema([
    pa.field("user_id", pa.string()),
    pa.field("status", pa.string()),  # one of interests.stages.STATUSES
    pa.field("n_history", pa.int64()),  # items the prompt showed
    pa.field("n_unknown", pa.int64()),  # clicks on item ids missing from the catalog
    pa.field("llm_text", pa.string()),  # the decoded JSON, as the LLM wrote it
    pa.field("llm_error", pa.string()),  # "", "timeout" or "error: ..."
    pa.field("json_valid", pa.bool_()),
    pa.field("topics", pa.list_(pa.string())),  # after cleaning
    pa.field("kept", pa.list_(pa.string())),  # after grounding
    pa.field("terms", pa.list_(pa.string())),  # the catalog term each kept topic matched
    pa.field("drops", pa.string()),  # JSON: reason -> count
    pa.field("llm_seconds", pa.float64()),  # the batch's generate time
    pa.field("llm_batch", pa.int64()),  # profiles in that batch
])
COLUMNS = (*USER_FIELDS.names, "vector")


def write_interests(out: Path, result: pd.DataFrame, item_ids: list[str], vectors: np.ndarray,
                    stats: dict[str, Any]) -> None:
    """interests.parquet, items.parquet and stats.json, swapped in as one folder so serving
    never reads a mix of two runs. `result` holds `COLUMNS`; `vectors` is (I, D)."""
    if missing := [c for c in COLUMNS if c not in result]:
        raise ValueError(f"interest results lack columns {missing}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    dim = vectors.shape[1]
    # Without pandas metadata: after Ray Data, list columns carry pyarrow-backed dtypes that
    # pandas cannot read back from that metadata.
    table = pa.Table.from_pandas(result[list(USER_FIELDS.names)], schema=USER_FIELDS,
                                 preserve_index=False).replace_schema_metadata(None)
    # After a trip through Ray Data (Arrow) a missing vector may come back as pd.NA.
    vec = pa.array([np.asarray(v, np.float32) if isinstance(v, list | np.ndarray) else None
                    for v in result["vector"]], pa.list_(pa.float32(), dim))
    pq.write_table(table.append_column("vector", vec), tmp / USERS_FILE)
    pq.write_table(pa.table({"item_id": pa.array(item_ids, pa.string()),
                             "vector": pa.FixedSizeListArray.from_arrays(
                                 vectors.astype(np.float32).ravel(), dim)}),
                   tmp / ITEMS_FILE)
    (tmp / STATS_FILE).write_text(json.dumps(stats, indent=1, default=str))
    old = out.with_name(out.name + ".old")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def read_results(folder: Path) -> pd.DataFrame:
    """interests.parquet as a DataFrame: every selected user, with its status and topics."""
    return pd.read_parquet(folder / USERS_FILE)


@dataclass
class Interests:
    """LLM interest vectors of sparse users and the catalog in the same encoder's space.

    `rows` maps positions of `index` to rows of the served catalog; items the expand run did
    not embed (or that left the catalog) are simply absent from it.
    """

    vectors: dict[str, np.ndarray]  # user_id -> (D,) unit vector
    index: faiss.Index
    rows: np.ndarray  # (I',) catalog row of each index position
    encoder: dict[str, Any]


def load_interests(folder: Path, item_ids: np.ndarray) -> Interests | None:
    """The interest folder at `folder` matched to a served catalog (`item_ids`, in catalog
    order), or None when there is none.

    A folder that is there but unusable (a file missing or unreadable, vectors of two
    encoders mixed) is refused with what to rerun, rather than served half-right.
    """
    if not (folder / USERS_FILE).exists():
        return None
    rerun = f"rerun `warmstart expand --out {folder}`, or remove that folder to serve without"
    try:
        users = pq.read_table(folder / USERS_FILE, columns=["user_id", "vector"])
        items = pq.read_table(folder / ITEMS_FILE, columns=["item_id", "vector"])
    except (OSError, KeyError, ValueError) as e:  # pyarrow's errors derive from these
        raise ValueError(f"interest folder {folder} is unreadable ({e}); {rerun}") from e
    vecs = {u: np.asarray(v, np.float32) for u, v in
            zip(users.column("user_id").to_pylist(), users.column("vector").to_pylist(),
                strict=True) if v is not None}
    row = {str(i): n for n, i in enumerate(item_ids)}
    ids = items.column("item_id").to_pylist()
    keep = np.array([i in row for i in ids], dtype=bool)
    if not keep.any() or not vecs:
        log.warning("interests in %s match no served item or user; not used", folder)
        return None
    mat = items.column("vector").combine_chunks()
    item_vecs = mat.values.to_numpy().reshape(len(ids), -1)[keep]  # I', D
    dims = {len(v) for v in vecs.values()}
    if dims != {item_vecs.shape[1]}:
        raise ValueError(f"interest folder {folder}: user vectors of {sorted(dims)} dimensions "
                         f"against item vectors of {item_vecs.shape[1]}: two encoders mixed; "
                         f"{rerun}")
    stats = folder / STATS_FILE
    meta = json.loads(stats.read_text()).get("encoder", {}) if stats.exists() else {}
    log.info("interest vectors for %d users over %d items from %s", len(vecs), keep.sum(),
             folder)
    return Interests(vecs, build_index(item_vecs),
                     np.array([row[i] for i, k in zip(ids, keep, strict=True) if k]), meta)
