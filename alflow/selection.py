"""Selecting frames for labelling from the committee deviation (DP-GEN style).

A frame is *accurate* when its committee force deviation is below ``lo``,
a *candidate* when ``lo <= dev < hi`` and *failed* when ``dev >= hi`` or the
deviation is not finite. At most ``max_selected`` candidates are labelled.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from ase import Atoms

from . import DEVIATION_KEY

ACCURATE, CANDIDATE, FAILED = "accurate", "candidate", "failed"


def classify(dev: float, lo: float, hi: float) -> str:
    if not math.isfinite(dev) or dev >= hi:
        return FAILED
    return CANDIDATE if dev >= lo else ACCURATE


def select(frames: list[Atoms], lo: float, hi: float, max_selected: int,
           strategy: str = "balanced") -> tuple[list[Atoms], dict]:
    """Pick frames to label; returns (selected, stats).

    ``strategy``:
      * ``max_deviation``: the candidates with the highest deviation.
      * ``balanced``: round-robin over walkers, each walker's candidates by
        decreasing deviation, so one runaway walker cannot fill the quota and
        the selection covers every thermodynamic condition that produced
        candidates (a cheap diversity criterion).
    """
    if not 0 <= lo < hi:
        raise ValueError(f"trust levels must satisfy 0 <= lo < hi, got lo={lo}, hi={hi}")
    classes = [classify(float(a.info.get(DEVIATION_KEY, np.nan)), lo, hi) for a in frames]
    candidates = [a for a, c in zip(frames, classes) if c == CANDIDATE]
    by_dev = sorted(candidates, key=lambda a: -a.info[DEVIATION_KEY])
    if strategy == "max_deviation":
        chosen = by_dev[:max_selected]
    elif strategy == "balanced":
        chosen = _round_robin(by_dev, max_selected)
    else:
        raise ValueError(f"unknown selection strategy {strategy!r}")
    counts = {c: classes.count(c) for c in (ACCURATE, CANDIDATE, FAILED)}
    n = len(frames)
    stats = {
        "n_frames": n,
        "n_accurate": counts[ACCURATE],
        "n_candidate": counts[CANDIDATE],
        "n_failed": counts[FAILED],
        "accurate_ratio": counts[ACCURATE] / n if n else None,
        "n_selected": len(chosen),
        "selected_deviation_min": min((a.info[DEVIATION_KEY] for a in chosen), default=None),
        "selected_deviation_max": max((a.info[DEVIATION_KEY] for a in chosen), default=None),
        "trust_lo": lo,
        "trust_hi": hi,
        "strategy": strategy,
    }
    return chosen, stats


def _round_robin(by_dev: list[Atoms], limit: int) -> list[Atoms]:
    queues: dict = defaultdict(list)
    for atoms in by_dev:
        queues[atoms.info.get("walker", 0)].append(atoms)
    order = sorted(queues, key=lambda w: -queues[w][0].info[DEVIATION_KEY])
    chosen: list[Atoms] = []
    depth = 0
    while len(chosen) < limit and any(len(q) > depth for q in queues.values()):
        for w in order:
            if depth < len(queues[w]) and len(chosen) < limit:
                chosen.append(queues[w][depth])
        depth += 1
    return chosen


def is_converged(stats: dict, threshold: float) -> bool:
    """True when an iteration's sampling shows the committee is good enough."""
    ratio = stats.get("accurate_ratio")
    return ratio is not None and ratio >= threshold
