from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from tests.s3_server import S3Server
from train import storage


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
           request: pytest.FixtureRequest) -> str:
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv(storage.CACHE_ENV, str(tmp_path / "cache"))
    return s3.bucket(request.node.name.replace("_", "-")[:40].strip("-"))


def files(uri: str) -> dict[str, bytes]:
    fs, root = storage.filesystem(uri)
    sel = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    return {i.path[len(root) + 1:]: fs.open_input_stream(i.path).read()
            for i in fs.get_file_info(sel) if i.type == pafs.FileType.File}


def test_locations_keep_uris_whole_and_paths_as_paths() -> None:
    assert storage.location("s3://b/data/") == "s3://b/data"
    assert storage.location("gs://b/x") == "gs://b/x"
    assert storage.location("data") == Path("data")
    assert storage.location("file:///tmp/x") == Path("/tmp/x")
    assert not storage.is_uri(Path("s3:/b/x")) and not storage.is_uri("C:/x")
    assert storage.origin(Path("data")) is None


def test_a_written_mirror_uploads_changes_deletes_deletions_and_latest_last(
        bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"{bucket}/artifacts"
    order: list[str] = []
    write = storage._write
    monkeypatch.setattr(storage, "_write", lambda fs, src, dst: (order.append(src.name),
                                                                  write(fs, src, dst)))
    with storage.mirrored(uri, write=True) as local:
        assert local.is_dir() and not any(local.iterdir())  # nothing there yet
        (local / "v1").mkdir()
        (local / "v1" / "model.pt").write_bytes(b"weights")
        (local / "LATEST").write_text("v1")
        (local / "_runs").mkdir()
        (local / "_runs" / "ckpt").write_bytes(b"written by workers, never mirrored")
        assert storage.origin(local / "v1" / "model.pt") == f"{uri}/v1/model.pt"
        assert storage.ray_path(local / "_runs")[1] is not None
    assert files(uri) == {"v1/model.pt": b"weights", "LATEST": b"v1"}
    assert order == ["model.pt", "LATEST"]
    assert storage.origin(local) is None  # closed

    with storage.mirrored(uri, write=True) as again:
        assert (again / "v1" / "model.pt").read_bytes() == b"weights"
        (again / "v2").mkdir()
        (again / "v2" / "model.pt").write_bytes(b"newer")
        (again / "LATEST").write_text("v2")
        (again / "v1" / "model.pt").unlink()
    assert files(uri) == {"v2/model.pt": b"newer", "LATEST": b"v2"}


def test_a_failed_flow_uploads_nothing_and_a_read_mirror_never_writes(bucket: str) -> None:
    uri = f"{bucket}/data"
    with storage.mirrored(uri, write=True) as local:
        (local / "items.parquet").write_bytes(b"x")
    with pytest.raises(RuntimeError), storage.mirrored(uri, write=True) as local:
        (local / "items.parquet").write_bytes(b"half written")
        raise RuntimeError("the flow failed")
    with storage.mirrored(uri) as local:
        (local / "users.parquet").write_bytes(b"y")
    assert files(uri) == {"items.parquet": b"x"}


def test_pull_only_takes_the_named_paths_and_follows_remote_deletions(bucket: str,
                                                                        tmp_path: Path) -> None:
    uri = f"{bucket}/root"
    src = tmp_path / "src"
    for rel in ("LATEST", "v1/a", "v2/a", "interests/x"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    storage.upload(src, uri)
    local = tmp_path / "mirror"
    got = storage.pull(uri, local, only=("LATEST", "v2"))
    assert sorted(got) == ["LATEST", "v2/a"]
    storage.remove(f"{uri}/v2")
    assert sorted(storage.pull(uri, local, only=("LATEST", "v2"))) == ["LATEST"]
    assert not (local / "v2" / "a").exists()


def test_mirrors_replace_a_flows_uri_arguments_for_its_run(bucket: str) -> None:
    args = argparse.Namespace(data=f"{bucket}/data", artifacts=Path("artifacts"), seed=3)
    with storage.mirrors(args, {"data": "write", "artifacts": "write"}):
        assert isinstance(args.data, Path) and args.data.is_dir()
        assert args.artifacts == Path("artifacts")  # a local folder stays itself
        (args.data / "items.parquet").write_bytes(b"x")
    assert files(f"{bucket}/data") == {"items.parquet": b"x"}


def test_an_unreachable_store_names_the_uri_and_how_to_fix_it(monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    with pytest.raises(ValueError, match="nope://x"):
        storage.filesystem("nope://x/y")


def test_a_store_that_refuses_the_upload_names_it_and_keeps_the_runs_files(
        s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv(storage.CACHE_ENV, str(tmp_path / "cache"))
    uri = "s3://no-such-bucket/artifacts"
    with pytest.raises(storage.StorageError) as failed, \
            storage.mirrored(uri, write=True) as local:
        (local / "LATEST").write_text("v1")
    message = str(failed.value)
    assert uri in message and "AWS_ENDPOINT_URL" in message and str(local) in message
    assert (local / "LATEST").read_text() == "v1"  # nothing the run wrote is lost
