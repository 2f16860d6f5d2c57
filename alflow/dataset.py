"""Growing the training set: deterministic, stable train/valid split.

A frame's split is decided by a hash of its provenance string, so it never
moves between train and valid when the dataset grows or is rebuilt, and the
same campaign always produces the same files.
"""
from __future__ import annotations

import hashlib
from collections import Counter

from ase import Atoms

from . import FAILURE_KEY


def goes_to_valid(key: str, valid_fraction: float) -> bool:
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < valid_fraction


def split(frames: list[Atoms], valid_fraction: float, tag: str) -> tuple[list[Atoms], list[Atoms]]:
    """Split new frames into (train, valid); ``tag`` identifies their batch.

    Each frame keeps ``info['origin']`` when it has one; otherwise it gets
    ``{tag}:{index}``. With at least two frames both sides get one frame.
    """
    train, valid = [], []
    for k, atoms in enumerate(frames):
        atoms.info.setdefault("origin", f"{tag}:{k}")
        (valid if goes_to_valid(atoms.info["origin"], valid_fraction) else train).append(atoms)
    if len(frames) >= 2 and valid_fraction > 0:
        if not valid:
            valid.append(train.pop())
        elif not train:
            train.append(valid.pop())
    return train, valid


def failure_counts(failed: list[Atoms]) -> dict[str, int]:
    """How many structures failed to label, by kind (the text before the first
    colon of ``info[FAILURE_KEY]``, e.g. ``scf_not_converged``)."""
    kinds = Counter(str(a.info.get(FAILURE_KEY, "unknown")).split(":", 1)[0].strip() or "unknown"
                    for a in failed)
    return dict(sorted(kinds.items()))


def failure_rate(n_labelled: int, failures: dict[str, int]) -> float:
    """Share of the structures sent to the reference that failed (0 without any)."""
    n_failed = sum(failures.values())
    return n_failed / (n_labelled + n_failed) if n_labelled + n_failed else 0.0


def empty_reason(failures: dict[str, int]) -> str:
    """Why there is nothing to train on, naming the dominant failure kind."""
    n_failed = sum(failures.values())
    if not n_failed:
        return "no structures were labelled and none failed"
    kind, count = max(failures.items(), key=lambda kv: kv[1])
    return f"all {n_failed} labels failed, {count} of them with {kind}"
