"""Growing the training set: deterministic, stable train/valid split.

Each batch of new labels is split once, when it joins the dataset: its frames
are ranked by a hash of their provenance string and the campaign seed, and the
first round(valid_fraction x n) go to validation. Earlier batches are carried
over as they are, so a frame never changes side when the dataset grows or is
rebuilt, and the same campaign always produces the same files.
"""
from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
from ase import Atoms

from . import FAILURE_KEY, FORCES_KEY


def n_valid(n: int, valid_fraction: float) -> int:
    """Validation frames of a batch of ``n``: round(fraction x n), at least one
    and at most n - 1 when the batch has two frames or more."""
    if n < 2 or valid_fraction <= 0:
        return 0
    return min(n - 1, max(1, round(valid_fraction * n)))


def _rank(origin: str, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}:{origin}".encode()).digest()


def split(frames: list[Atoms], valid_fraction: float, tag: str,
          seed: int = 0) -> tuple[list[Atoms], list[Atoms]]:
    """Split a batch of new frames into (train, valid); ``tag`` identifies it.

    Each frame keeps ``info['origin']`` when it has one; otherwise it gets
    ``{tag}:{index}``. The :func:`n_valid` frames whose hash of (seed,
    origin) ranks first go to validation; both lists keep the input order.
    """
    for k, atoms in enumerate(frames):
        atoms.info.setdefault("origin", f"{tag}:{k}")
    order = sorted(range(len(frames)), key=lambda k: _rank(frames[k].info["origin"], seed))
    chosen = set(order[:n_valid(len(frames), valid_fraction)])
    train = [a for k, a in enumerate(frames) if k not in chosen]
    valid = [a for k, a in enumerate(frames) if k in chosen]
    return train, valid


def max_reference_force(atoms: Atoms) -> float:
    """The largest atomic reference force of a labelled frame (eV/Å)."""
    return float(np.linalg.norm(atoms.arrays[FORCES_KEY], axis=1).max())


def force_cap(frames: list[Atoms], max_force: float | None) -> tuple[list[Atoms], list[Atoms]]:
    """Split labelled frames into (kept, excluded): a frame whose largest
    atomic reference force exceeds ``max_force`` (eV/Å) is excluded from
    training. Such a frame is a collision the walkers ran into (molecules
    pushed together far beyond thermal reach); its forces, tens of eV/Å,
    would dominate the force loss of a small training set. None keeps all."""
    if max_force is None:
        return list(frames), []
    kept = [a for a in frames if max_reference_force(a) <= max_force]
    return kept, [a for a in frames if max_reference_force(a) > max_force]


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
