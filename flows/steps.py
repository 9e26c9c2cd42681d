"""Resumable flows: each step writes its output with a record of its inputs; a rerun whose
inputs are unchanged finds that output and skips the step.

    <root>/<step>/<key>/            the step's output files
    <root>/<step>/<key>/_step.json  its inputs, the time it took, when it finished

The key is a digest of the step's inputs: its configuration, fingerprints of the data files
it reads (path, size, modification time) and the keys of the steps it depends on, so a
change anywhere upstream gives every later step a new key. A step is written to a temporary
folder and renamed when complete: an interrupted step leaves nothing that looks finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

KEEP_PER_STEP = 3  # newest outputs kept per step; older ones are pruned


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def digest(inputs: dict[str, Any]) -> str:
    blob = json.dumps(_jsonable(inputs), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fingerprint(paths: Iterable[Path]) -> list[list[Any]]:
    """[path, size, mtime_ns] of every file: cheap, and changes when a file is rewritten."""
    out = []
    for p in sorted(paths):
        st = p.stat()
        out.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return out


class Steps:
    """Runs named steps, skipping those whose inputs match a finished earlier run."""

    def __init__(self, root: Path, reuse: bool = True, log: Callable[[str], None] = print
                 ) -> None:
        self.root = root
        self.reuse = reuse
        self.log = log
        self.keys: dict[str, str] = {}
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def run(self, name: str, inputs: dict[str, Any], compute: Callable[[Path], None],
            after: tuple[str, ...] = (), valid: Callable[[Path], bool] | None = None) -> Path:
        """The output folder of step `name`, computing it into a fresh folder when no finished
        output has the same inputs. `after` names earlier steps whose keys join the inputs;
        `valid` can reject a finished output whose effects outside it are gone (a published
        version deleted since)."""
        missing = [a for a in after if a not in self.keys]
        if missing:
            raise RuntimeError(f"step {name} depends on {missing}, which have not run")
        record = {"step": name, "inputs": inputs, "after": {a: self.keys[a] for a in after}}
        key = digest(record)
        self.keys[name] = key
        folder = self.root / name / key
        if (self.reuse and (folder / "_step.json").exists()
                and (valid is None or valid(folder))):
            self.skipped.append(name)
            self.log(f"[train] {name}: inputs unchanged, reusing {folder}")
            return folder
        tmp = folder.with_name(f".{key}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.mkdir(parents=True)
        t0 = time.perf_counter()
        self.log(f"[train] {name} ...")
        compute(tmp)
        seconds = time.perf_counter() - t0
        (tmp / "_step.json").write_text(json.dumps(
            _jsonable(record | {"key": key, "seconds": seconds,
                                "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}),
            indent=1, default=str))
        tmp.rename(folder)
        self.ran.append(name)
        self.log(f"[train] {name}: {seconds:.1f} s")
        self._prune(folder.parent)
        return folder

    def folder(self, name: str) -> Path:
        """The output folder of step `name`, which has run (or been reused) in this flow."""
        if name not in self.keys:
            raise RuntimeError(f"step {name} has not run")
        return self.root / name / self.keys[name]

    @staticmethod
    def _prune(step_root: Path) -> None:
        done = sorted((p for p in step_root.iterdir() if (p / "_step.json").exists()),
                      key=lambda p: (p / "_step.json").stat().st_mtime, reverse=True)
        for old in done[KEEP_PER_STEP:]:
            shutil.rmtree(old, ignore_errors=True)
