"""Selecting frames for labelling from the committee deviation (DP-GEN style).

A frame is *accurate* when its committee force deviation is below ``lo``,
a *candidate* when ``lo <= dev < hi`` and *failed* when ``dev >= hi`` or the
deviation is not finite. At most ``max_selected`` frames are labelled.

The trust levels are either fixed or *adaptive* (:func:`trust_levels`, in the
spirit of dpgen2's adaptive lower level). Optionally, the frame where a walker
stopped past ``hi`` is labelled too when it is physically sane
(:func:`is_sane`): it lies exactly where the committee broke down. A share of the budget may be
picked uniformly at random (the built-in control arm, tagged ``selected_by =
"random"``).
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd
from ase import Atoms
from ase.data import covalent_radii
from ase.neighborlist import neighbor_list

from . import DESCRIPTOR_KEY, DEVIATION_KEY
from .sampling import STOP_KEY

ACCURATE, CANDIDATE, FAILED = "accurate", "candidate", "failed"
STRATEGIES = ("balanced", "max_deviation", "fps", "random")
SELECTED_BY = "selected_by"  # Atoms.info: "audit", "random" (control arm) or the strategy's name
AUDIT = "audit"
PAST_HI = "past_hi"  # Atoms.info: True on a selected frame where a walker stopped past trust_hi


def classify(dev: float, lo: float, hi: float) -> str:
    if not math.isfinite(dev) or dev >= hi:
        return FAILED
    return CANDIDATE if dev >= lo else ACCURATE


def deviation(atoms: Atoms) -> float:
    return float(atoms.info.get(DEVIATION_KEY, np.nan))


def trust_levels(devs, lo: float, hi: float, mode: str = "fixed",
                 candidate_fraction: float = 0.25, hi_factor: float = 4.0,
                 scale: float | None = None, prior_scale: float = 1.0) -> tuple[float, float]:
    """The (lo, hi) deviation levels used for one iteration.

    ``fixed``: the configured levels. ``calibrated``: the configured levels
    are true max atomic force errors (eV/Å), and a frame's predicted error is
    ``scale`` x its deviation (the calibration of the previous iteration), so
    the deviation levels are ``lo / scale`` and ``hi / scale``; without a
    calibration yet (iteration 1) ``prior_scale`` stands in for the scale. ``adaptive``: ``lo`` is the deviation
    above which the top ``candidate_fraction`` of this iteration's trusted
    frames (finite deviation below the configured ``hi``) lie, never below the
    configured ``lo`` (the floor); ``hi`` is ``hi_factor * lo``, never above the
    configured ``hi`` (the cap). As the committee improves its deviations
    shrink, the levels follow it down to the floor, and the accurate share
    (hence convergence) is measured against the floor.
    """
    if not 0 <= lo < hi:
        raise ValueError(f"trust levels must satisfy 0 <= lo < hi, got lo={lo}, hi={hi}")
    if mode == "fixed":
        return lo, hi
    if mode == "calibrated":
        return calibrated_levels(lo, hi, scale, prior_scale)
    if mode != "adaptive":
        raise ValueError(f"unknown trust mode {mode!r} (fixed, calibrated or adaptive)")
    devs = np.asarray([d for d in devs if math.isfinite(d) and d < hi], dtype=float)
    if devs.size == 0:
        return lo, hi
    level = float(np.quantile(devs, 1.0 - candidate_fraction))
    new_lo = min(max(lo, level), hi)
    new_hi = min(hi, max(hi_factor * new_lo, new_lo))
    if new_hi <= new_lo:  # the quantile reached the cap: keep a non-empty candidate band
        new_lo = lo if lo < new_hi else 0.5 * new_hi
    return new_lo, new_hi


def calibrated_levels(lo: float, hi: float, scale: float | None,
                      prior_scale: float = 1.0) -> tuple[float, float]:
    """Deviation levels whose predicted errors (``scale`` x deviation) are
    ``lo`` and ``hi``; ``prior_scale`` stands in for a missing or non-positive
    scale (no calibration yet)."""
    if not scale or not math.isfinite(scale) or scale <= 0:
        scale = prior_scale
    return lo / scale, hi / scale


def is_sane(atoms: Atoms, min_distance_fraction: float) -> bool:
    """No two atoms closer than ``min_distance_fraction`` x the sum of their
    covalent radii (a bond squeezed to that share of its usual length)."""
    if len(atoms) < 2:
        return True
    # per-atom cutoffs: a pair is listed when closer than the sum of its two
    # (minimum image and periodic images included, in O(N))
    too_close = neighbor_list("i", atoms, min_distance_fraction * covalent_radii[atoms.numbers])
    return len(too_close) == 0


def first_past_hi(frames: list[Atoms], hi: float, min_distance_fraction: float) -> list[Atoms]:
    """The frames where a walker stopped because its deviation reached the
    upper level (``info['stop']``, set by the sampler; one per walker and
    restart), when the deviation is finite, at least ``hi``, and the geometry
    sane (:func:`is_sane`). Non-finite deviations mean non-finite forces:
    never labelled this way."""
    out = []
    for atoms in frames:
        dev = deviation(atoms)
        if (atoms.info.get("stop") == "deviation" and math.isfinite(dev) and dev >= hi
                and is_sane(atoms, min_distance_fraction)):
            out.append(atoms)
    return out


def select(frames: list[Atoms], lo: float, hi: float, max_selected: int,
           strategy: str = "balanced", *, seed: int = 0, random_fraction: float = 0.0,
           label_past_hi: bool = False, min_distance_fraction: float = 0.6,
           accurate_below: float | None = None, audit: int = 0) -> tuple[list[Atoms], dict]:
    """Pick frames to label; returns (selected, stats).

    Uniform draws come first, each from the *sane* frames (finite deviation,
    :func:`is_sane`; a NaN frame never reaches the reference) not yet taken:
    ``audit`` frames (the unbiased audit sample, tagged ``audit``), then
    ``round(random_fraction * max_selected)`` frames (the control arm, tagged
    ``random``). The rest of the budget goes to ``strategy``:

      * ``balanced``: round-robin over walkers, each walker's candidates by
        decreasing deviation (diversity across thermodynamic conditions).
      * ``max_deviation``: the candidates with the highest deviation.
      * ``fps``: farthest-point sampling among the candidates on their MACE
        descriptors (``info[DESCRIPTOR_KEY]``), from a seeded random start.
      * ``random``: uniform over the sane sampled frames, deviation ignored.

    Candidates must be sane too (``n_candidate_insane`` counts those left
    out). With ``label_past_hi`` the sane frames where walkers stopped past
    ``hi`` join the candidates. Selected frames carry ``info[SELECTED_BY]``.
    ``accurate_ratio`` (what convergence is judged on) is the share of frames
    below ``accurate_below`` when given (adaptive levels: the configured
    floor), else below ``lo``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown selection strategy {strategy!r} (one of {', '.join(STRATEGIES)})")
    if not 0 <= lo < hi:
        raise ValueError(f"trust levels must satisfy 0 <= lo < hi, got lo={lo}, hi={hi}")
    rng = np.random.default_rng(seed)
    classes = [classify(deviation(a), lo, hi) for a in frames]
    sane = [a for a in frames
            if math.isfinite(deviation(a)) and is_sane(a, min_distance_fraction)]
    sane_ids = {id(a) for a in sane}
    # a candidate with atoms on top of each other is never paid for: its label
    # would be a collision past any force cap (a walker the committee drove,
    # unaware, into a wall it has no data for)
    candidates = [a for a, c in zip(frames, classes) if c == CANDIDATE]
    insane = [a for a in candidates if id(a) not in sane_ids]
    candidates = [a for a in candidates if id(a) in sane_ids]
    past_hi = first_past_hi(frames, hi, min_distance_fraction) if label_past_hi else []
    for atoms in past_hi:
        atoms.info[PAST_HI] = True

    audited = _uniform(sane, min(audit, max_selected), rng)
    taken = {id(a) for a in audited}
    n_random = min(max_selected - len(audited), round(random_fraction * max_selected))
    control = _uniform([a for a in sane if id(a) not in taken], n_random, rng)
    taken |= {id(a) for a in control}
    budget = max_selected - len(audited) - len(control)
    if strategy == "random":
        picked = _uniform([a for a in sane if id(a) not in taken], budget, rng)
    else:
        pool = [a for a in candidates + past_hi if id(a) not in taken]
        by_dev = sorted(pool, key=lambda a: -deviation(a))
        if strategy == "max_deviation":
            picked = by_dev[:budget]
        elif strategy == "balanced":
            picked = _round_robin(by_dev, budget)
        else:
            picked = farthest_point_sampling(
                [_descriptor(a) for a in pool], budget, rng) if pool else []
            picked = [pool[k] for k in picked]
    for atoms in audited:
        atoms.info[SELECTED_BY] = AUDIT
    for atoms in control:
        atoms.info[SELECTED_BY] = "random"
    for atoms in picked:
        atoms.info[SELECTED_BY] = strategy
    chosen = audited + control + picked
    counts = {c: classes.count(c) for c in (ACCURATE, CANDIDATE, FAILED)}
    n = len(frames)
    stats = {
        "n_frames": n,
        "n_accurate": counts[ACCURATE],
        "n_candidate": counts[CANDIDATE],
        "n_failed": counts[FAILED],
        "accurate_ratio": (counts[ACCURATE] if accurate_below is None else sum(
            deviation(a) < accurate_below for a in frames)) / n if n else None,
        "n_selected": len(chosen),
        "n_selected_random": len(control),
        "n_selected_audit": len(audited),
        "n_sane": len(sane),
        "n_candidate_insane": len(insane),
        "n_past_hi_sane": len(past_hi),
        "n_past_hi_selected": sum(1 for a in chosen if a.info.get(PAST_HI)),
        "selected_deviation_min": min((deviation(a) for a in chosen), default=None),
        "selected_deviation_max": max((deviation(a) for a in chosen), default=None),
        "trust_lo": lo,
        "trust_hi": hi,
        "strategy": strategy,
    }
    chosen_ids = {id(a) for a in chosen}
    for atoms in past_hi:
        if id(atoms) not in chosen_ids:
            del atoms.info[PAST_HI]
    return chosen, stats


def _uniform(frames: list[Atoms], k: int, rng) -> list[Atoms]:
    if k <= 0 or not frames:
        return []
    idx = rng.choice(len(frames), size=min(k, len(frames)), replace=False)
    return [frames[i] for i in sorted(idx)]


def _descriptor(atoms: Atoms) -> np.ndarray:
    if DESCRIPTOR_KEY not in atoms.info:
        raise ValueError(f"strategy 'fps' needs info['{DESCRIPTOR_KEY}'] on every frame; the "
                         "sample step stores it when selection.strategy is fps")
    return np.asarray(atoms.info[DESCRIPTOR_KEY], dtype=float).ravel()


def farthest_point_sampling(points, k: int, rng) -> list[int]:
    """Indices of ``k`` points picked greedily, each the farthest (Euclidean)
    from those already picked; the first one at random from ``rng``."""
    x = np.asarray(points, dtype=float)
    n = len(x)
    if k <= 0 or n == 0:
        return []
    chosen = [int(rng.integers(n))]
    dist = np.linalg.norm(x - x[chosen[0]], axis=1)
    dist[chosen[0]] = -1.0  # never picked twice, even among identical points
    while len(chosen) < min(k, n):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
        dist[chosen] = -1.0
    return chosen


def _round_robin(by_dev: list[Atoms], limit: int) -> list[Atoms]:
    queues: dict = defaultdict(list)
    for atoms in by_dev:
        queues[atoms.info.get("walker", 0)].append(atoms)
    order = sorted(queues, key=lambda w: -deviation(queues[w][0]))
    chosen: list[Atoms] = []
    depth = 0
    while len(chosen) < limit and any(len(q) > depth for q in queues.values()):
        for w in order:
            if depth < len(queues[w]) and len(chosen) < limit:
                chosen.append(queues[w][depth])
        depth += 1
    return chosen


FRAME_COLUMNS = ["walker", "temperature", "pressure", "step", "deviation", "class", "stop",
                 "selected_by"]


def frame_table(frames: list[Atoms], lo: float, hi: float, chosen: list[Atoms]) -> pd.DataFrame:
    """One row per sampled frame: where it came from, its deviation and class
    under the levels (lo, hi), the walker's stop reason on the frame where it
    stopped, and ``selected_by`` (empty when not selected). The small file
    the report's deviation histogram reads instead of the trajectories."""
    picked = {id(a): a.info.get(SELECTED_BY, "") for a in chosen}
    rows = [{
        "walker": a.info.get("walker"),
        "temperature": a.info.get("temperature"),
        "pressure": a.info.get("pressure"),
        "step": a.info.get("step"),
        "deviation": deviation(a),
        "class": classify(deviation(a), lo, hi),
        "stop": a.info.get(STOP_KEY, ""),
        "selected_by": picked.get(id(a), ""),
    } for a in frames]
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)


def is_converged(stats: dict, threshold: float) -> bool:
    """True when an iteration's sampling shows the committee is good enough."""
    ratio = stats.get("accurate_ratio")
    return ratio is not None and ratio >= threshold
