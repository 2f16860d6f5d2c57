"""Reading and writing extxyz frames safely.

Every file a rule produces is written atomically (temporary file in the same
directory, then ``os.replace``), so a job killed halfway never leaves a
truncated output that a later rule would trust.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import ase.io
from ase import Atoms


def read_frames(path: str | os.PathLike) -> list[Atoms]:
    """All frames of an extxyz file; an empty file is an empty list."""
    path = Path(path)
    if path.stat().st_size == 0:
        return []
    return list(ase.io.read(path, index=":", format="extxyz"))


def read_many(paths: Iterable[str | os.PathLike]) -> list[Atoms]:
    """Frames of several extxyz files, concatenated in the given order."""
    frames: list[Atoms] = []
    for path in paths:
        frames.extend(read_frames(path))
    return frames


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_frames(path: str | os.PathLike, frames: Iterable[Atoms]) -> None:
    """Write frames as extxyz atomically; no frames gives an empty file."""
    frames = list(frames)
    with atomic_path(path) as tmp:
        if frames:
            ase.io.write(tmp, frames, format="extxyz")
        else:
            tmp.write_text("")


def write_csv(path: str | os.PathLike, table) -> None:
    """Write a pandas table as CSV atomically (no index column)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write a JSON document atomically, pretty-printed."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())
