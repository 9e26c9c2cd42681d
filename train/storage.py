"""Where data and artifacts live: a local folder, or a URI (`s3://bucket/prefix`, `gs://...`,
any scheme pyarrow's filesystems know) that every node of a cluster can reach.

Work that runs on Ray's workers uses the URI itself, since a worker on another node cannot
see the driver's folder: Ray Data reads the interaction days from it and writes generated
days to it, Ray Train keeps its checkpoints under it (`RunConfig.storage_path`). Work done in
one process (pandas tables, a version's models and index, the step cache, a serving replica's
version) uses a local mirror: `mirrored(uri)` copies what the URI holds into a cache folder,
yields that folder, and for a flow that writes, uploads what the flow added or changed and
deletes what it deleted. `origin(path)` maps a path inside a mirror back to its URI.

Credentials and endpoints come from the filesystem's own environment: for S3,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, and AWS_ENDPOINT_URL for an
S3-compatible server (MinIO, Ceph, a test's moto). Mirrors are kept under
$WARMSTART_CACHE (default ~/.cache/warmstart), so a second run downloads only what changed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

log = logging.getLogger(__name__)

CACHE_ENV = "WARMSTART_CACHE"
LAST = ("LATEST",)  # uploaded after every other file: a reader never sees a LATEST that
# names a version not yet complete
# Written by Ray's workers straight to the URI, never through a mirror: Ray Train's run
# folders under an artifact root.
WORKER_WRITTEN = ("_runs",)
_MIRRORS: dict[Path, str] = {}  # local mirror root -> its URI, while a mirror is open

Location = str | Path  # what a flag like --data or --artifacts holds
CREDENTIALS = ("check the location and its credentials (for S3: AWS_ACCESS_KEY_ID, "
               "AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, and AWS_ENDPOINT_URL for an "
               "S3-compatible store)")


class StorageError(RuntimeError):
    """A URI that could not be read or written: which one, why, and what to check."""


@contextlib.contextmanager
def _reaching(uri: str, kept: Path | None = None) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        where = f"; this run's files are kept in {kept}" if kept is not None else ""
        raise StorageError(f"{uri}: {e}; {CREDENTIALS}{where}") from e


def is_uri(location: Location | None) -> bool:
    """True for `scheme://...` with a scheme other than file."""
    if location is None or isinstance(location, Path):
        return False
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", location)
    return m is not None and m.group(1).lower() != "file"


def location(text: str) -> Location:
    """The argparse type of a data or artifact location: a URI stays a string (a Path would
    fold its `//`), anything else is a Path."""
    if is_uri(text):
        return text.rstrip("/")
    return Path(text.removeprefix("file://"))


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's filesystem for `uri` and the path inside it."""
    try:
        return pafs.FileSystem.from_uri(uri)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(f"cannot open {uri}: {e}. Use a local folder or a URI such as "
                         "s3://bucket/prefix (credentials from AWS_* environment "
                         "variables)") from e


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "warmstart")


def cache_for(uri: str) -> Path:
    """The local mirror folder of `uri`: readable, one per URI."""
    scheme, rest = uri.split("://", 1)
    safe = re.sub(r"[^A-Za-z0-9._/-]", "_", rest.strip("/"))
    return cache_root() / scheme / safe


def origin(path: Path | str) -> str | None:
    """The URI `path` mirrors (a path inside an open mirror), else None."""
    if isinstance(path, str):
        return path if is_uri(path) else origin(Path(path))
    p = path.resolve()
    for root, uri in _MIRRORS.items():
        if p == root or root in p.parents:
            rel = p.relative_to(root).as_posix()
            return uri if rel == "." else join(uri, rel)
    return None


def ray_path(path: Path) -> tuple[str, pafs.FileSystem | None]:
    """What Ray Data and Ray Train should be given for `path`: its URI and filesystem when
    it lies in a mirror (every node can reach it), else the absolute local path."""
    uri = origin(path)
    if uri is None:
        return str(path.resolve()), None
    fs, inner = filesystem(uri)
    return inner, fs


def _remote_files(fs: pafs.FileSystem, root: str) -> dict[str, pafs.FileInfo]:
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        return {}
    if info.type == pafs.FileType.File:
        raise ValueError(f"{root} is a file, not a folder of data or artifacts")
    sel = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    return {i.path[len(root):].lstrip("/"): i for i in fs.get_file_info(sel)
            if i.type == pafs.FileType.File}


def _under(rel: str, paths: Iterable[str]) -> bool:
    return any(rel == e or rel.startswith(e.rstrip("/") + "/") for e in paths)


def _excluded(rel: str, exclude: Iterable[str], only: Iterable[str] | None = None) -> bool:
    return _under(rel, exclude) or (only is not None and not _under(rel, only))


def _snapshot(local: Path, exclude: Iterable[str], only: Iterable[str] | None = None
              ) -> dict[str, tuple[int, int]]:
    out = {}
    for p in local.rglob("*"):
        if p.is_file() and not p.name.endswith(".part"):
            rel = p.relative_to(local).as_posix()
            if not _excluded(rel, exclude, only):
                st = p.stat()
                out[rel] = (st.st_size, st.st_mtime_ns)
    return out


def pull(uri: str, local: Path, exclude: Iterable[str] = (),
         only: Iterable[str] | None = None) -> dict[str, tuple[int, int]]:
    """Copy the files under `uri` (all, or those under the relative paths `only`) into
    `local`; files already there with the remote size and time are kept, and local files the
    URI no longer holds are removed. Returns the local snapshot after it (relative path ->
    size, mtime). Several processes may pull into one mirror at once."""
    exclude = tuple(exclude)
    only = None if only is None else tuple(only)
    with _reaching(uri):
        return _pull(uri, local, exclude, only)


def _pull(uri: str, local: Path, exclude: tuple[str, ...], only: tuple[str, ...] | None
          ) -> dict[str, tuple[int, int]]:
    fs, root = filesystem(uri)
    remote = _remote_files(fs, root)
    local.mkdir(parents=True, exist_ok=True)
    copied = 0
    for rel, info in remote.items():
        if _excluded(rel, exclude, only):
            continue
        dst = local / rel
        mtime_ns = info.mtime_ns if info.mtime_ns is not None else 0
        if dst.is_file() and dst.stat().st_size == info.size \
                and dst.stat().st_mtime_ns == mtime_ns:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.part")
        with fs.open_input_stream(info.path) as src, open(tmp, "wb") as f:
            while chunk := src.read(1 << 22):
                f.write(chunk)
        os.replace(tmp, dst)
        os.utime(dst, ns=(mtime_ns, mtime_ns))  # the remote time: unchanged until written
        copied += 1
    # files the URI no longer holds (another run deleted them) leave the mirror too
    for rel in set(_snapshot(local, exclude, only)) - set(remote):
        with contextlib.suppress(FileNotFoundError):
            (local / rel).unlink()
    log.info("pulled %d of %d files from %s into %s", copied, len(remote), uri, local)
    return _snapshot(local, exclude, only)


def push(local: Path, uri: str, before: dict[str, tuple[int, int]],
         exclude: Iterable[str] = ()) -> tuple[int, int]:
    """Upload what changed in `local` since the snapshot `before` (new or rewritten files),
    LATEST last, and delete from `uri` what was deleted locally; returns (uploaded, deleted).
    A failure names the URI and keeps `local` as it is (nothing the run wrote is lost)."""
    with _reaching(uri, kept=local):
        return _push(local, uri, before, tuple(exclude))


def _push(local: Path, uri: str, before: dict[str, tuple[int, int]],
          exclude: tuple[str, ...]) -> tuple[int, int]:
    fs, root = filesystem(uri)
    now = _snapshot(local, exclude)
    changed = sorted((rel for rel, sig in now.items() if before.get(rel) != sig),
                     key=lambda rel: rel in LAST)
    for rel in changed:
        _write(fs, local / rel, join(root, rel))
    gone = sorted(set(before) - set(now))
    for rel in gone:
        with contextlib.suppress(FileNotFoundError):
            fs.delete_file(join(root, rel))
    log.info("pushed %d files to %s, deleted %d", len(changed), uri, len(gone))
    return len(changed), len(gone)


def upload(local: Path, uri: str) -> None:
    """Upload the file or every file of the folder `local` to `uri` (overwriting)."""
    with _reaching(uri, kept=local):
        fs, root = filesystem(uri)
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*")
                                                       if p.is_file())
        for p in files:
            _write(fs, p, root if p == local else join(root, p.relative_to(local).as_posix()))


def _write(fs: pafs.FileSystem, src_path: Path, dst: str) -> None:
    fs.create_dir(dst.rsplit("/", 1)[0], recursive=True)
    with open(src_path, "rb") as src, fs.open_output_stream(dst) as out:
        while chunk := src.read(1 << 22):
            out.write(chunk)


def remove(uri: str) -> None:
    """Delete the folder `uri` and everything under it (nothing when it does not exist)."""
    with _reaching(uri):
        fs, root = filesystem(uri)
        if fs.get_file_info(root).type != pafs.FileType.NotFound:
            fs.delete_dir(root)


@contextlib.contextmanager
def mirrored(loc: Location, write: bool = False, exclude: Iterable[str] = WORKER_WRITTEN
             ) -> Iterator[Path]:
    """A local folder for `loc`: itself when local; else a mirror of the URI, whose changes
    are uploaded when the block ends without an error and `write` is set. `exclude`: paths
    (relative) that are neither pulled nor pushed (what workers write to the URI directly)."""
    if not is_uri(loc):
        yield Path(loc)
        return
    uri = str(loc)
    local = cache_for(uri)
    before = pull(uri, local, exclude)
    key = local.resolve()
    _MIRRORS[key] = uri
    try:
        yield local
        if write:
            push(local, uri, before, exclude)
    finally:
        _MIRRORS.pop(key, None)


@contextlib.contextmanager
def mirrors(args: Any, locations: dict[str, str]) -> Iterator[None]:
    """Replace each URI among `args`' attributes named in `locations` ("read" or "write")
    by its local mirror for the duration of the block (a flow's `run(args)`)."""
    with contextlib.ExitStack() as stack:
        for attr, mode in locations.items():
            value = getattr(args, attr, None)
            if value is not None and is_uri(value):
                setattr(args, attr, stack.enter_context(
                    mirrored(value, write=mode == "write")))
        yield
