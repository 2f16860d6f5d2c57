"""Does the committee's uncertainty mean anything? Checked against the truth.

The labels of iteration i are the reference for the committee of i-1 that
chose them: every sampled frame carries the committee's deviation and its
mean forces (written by the sample step), so once the reference has labelled
a frame the real error of that committee is known at no extra cost.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from ase import Atoms
from scipy import stats

from . import (COMMITTEE_ENERGY_KEY, COMMITTEE_FORCES_KEY, DEVIATION_KEY, ENERGY_KEY,
               FORCES_KEY, MEMBER_ENERGIES_KEY)
from .metrics import composition, energy_errors

COLUMNS = ["origin", "walker", "step", "temperature", "selected_by", "past_hi",
           "deviation", "true_max_force_error", "true_force_rmse", "composition",
           "energy_error", "member_energy_errors"]


def frame_errors(frames: list[Atoms]) -> pd.DataFrame:
    """One row per labelled frame that carries the committee's prediction.

    ``deviation``: the committee's max atomic force deviation (eV/Å);
    ``true_max_force_error``: max over atoms of |F_committee - F_ref| (eV/Å),
    the quantity the deviation tries to predict; ``true_force_rmse``: RMSE
    over all force components (eV/Å); ``energy_error``: (committee energy -
    reference) per atom (eV/atom), NaN where the frame has no committee
    energy; ``member_energy_errors``: the same per member, ``;``-separated.
    """
    rows = []
    for atoms in frames:
        if COMMITTEE_FORCES_KEY not in atoms.arrays or FORCES_KEY not in atoms.arrays:
            continue
        err = np.asarray(atoms.arrays[COMMITTEE_FORCES_KEY]) - np.asarray(atoms.arrays[FORCES_KEY])
        rows.append({
            "origin": atoms.info.get("origin"),
            "walker": atoms.info.get("walker"),
            "step": atoms.info.get("step"),
            "temperature": atoms.info.get("temperature"),
            "selected_by": atoms.info.get("selected_by", ""),
            "past_hi": bool(atoms.info.get("past_hi", False)),
            "deviation": float(atoms.info.get(DEVIATION_KEY, np.nan)),
            "true_max_force_error": float(np.linalg.norm(err, axis=1).max()),
            "true_force_rmse": float(np.sqrt(np.mean(err ** 2))),
            "composition": composition(atoms),
            **_energy_errors(atoms),
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def _energy_errors(atoms: Atoms) -> dict:
    ref, n = atoms.info.get(ENERGY_KEY), len(atoms)
    if ref is None or COMMITTEE_ENERGY_KEY not in atoms.info:
        return {"energy_error": np.nan, "member_energy_errors": ""}
    members = np.ravel(atoms.info.get(MEMBER_ENERGIES_KEY, []))
    return {"energy_error": (float(atoms.info[COMMITTEE_ENERGY_KEY]) - ref) / n,
            "member_energy_errors": ";".join(f"{(e - ref) / n:.6g}" for e in members)}


def walker_errors(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The true max atomic force error of each labelled frame, by walker and
    then step (string keys, for JSON): what the labels revealed about where
    each walker went (:func:`alflow.sampling.distrusted_walkers`)."""
    out: dict[str, dict[str, float]] = {}
    for row in table.dropna(subset=["walker", "step"]).itertuples():
        out.setdefault(str(int(row.walker)), {})[str(int(row.step))] = \
            float(row.true_max_force_error)
    return out


def spearman(x, y) -> float | None:
    """Spearman rank correlation (:func:`scipy.stats.spearmanr`) over the pairs
    where both values are finite; None when fewer than 3 such pairs or a
    constant input leave it undefined."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    finite = np.isfinite(x) & np.isfinite(y)
    if finite.sum() < 3:
        return None
    with warnings.catch_warnings():  # a constant input: NaN, reported as None
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        value = stats.spearmanr(x[finite], y[finite]).statistic
    return float(value) if np.isfinite(value) else None


def summarize(table: pd.DataFrame, trust_lo: float) -> dict:
    """Calibration numbers of one iteration (errors in eV/Å).

    ``spearman``: rank correlation between predicted deviation and true max
    force error over the labelled frames; ``mean_true_error``: mean true max
    force error of the selected frames; ``share_above_trust_lo``: the share
    whose true error exceeded ``trust_lo`` (the committee really was wrong
    there); ``error_over_deviation``: median ratio of true error to deviation
    (1 means the deviation is on the scale of the error). The same numbers for
    the frames picked by the random control arm, when there are any, are under
    ``random``: an unbiased sample of the sampled frames.
    """
    out = _numbers(table, trust_lo)
    random = table[table["selected_by"] == "random"]
    if len(random):
        out["random"] = _numbers(random, trust_lo)
    return out


def _numbers(table: pd.DataFrame, trust_lo: float) -> dict:
    n = len(table)
    if n == 0:
        return {"n_labelled": 0, "spearman": None, "mean_true_error": None,
                "share_above_trust_lo": None, "error_over_deviation": None}
    err, dev = table["true_max_force_error"], table["deviation"]
    ratio = (err / dev).replace([np.inf, -np.inf], np.nan).dropna()
    return {
        "n_labelled": n,
        "spearman": spearman(dev, err),
        "mean_true_error": float(err.mean()),
        "mean_deviation": float(dev[np.isfinite(dev)].mean()) if np.isfinite(dev).any() else None,
        "share_above_trust_lo": float((err > trust_lo).mean()),
        "error_over_deviation": float(ratio.median()) if len(ratio) else None,
    }


AUDIT = "audit"  # selected_by of the unbiased audit frames


def audit_estimate(frame_rmse, *, seed: int = 0, n_boot: int = 2000,
                   level: float = 0.95) -> dict:
    """The committee's force RMSE on the distribution its walkers explore,
    from the audit frames (a uniform sample of the sampled frames, so the
    estimate is unbiased), with a bootstrap interval over frames.

    ``frame_rmse``: each audit frame's force RMSE over its components (eV/Å);
    frames of one system have equal atom counts, so the RMSE over all
    components is sqrt(mean of the squares). Returns meV/Å: ``rmse``,
    ``lower`` and ``upper`` (percentile interval at ``level``), ``n_frames``.
    With one frame the interval is that frame's value; with none, all None.
    """
    sq = np.square(np.asarray([e for e in frame_rmse if np.isfinite(e)], dtype=float))
    if sq.size == 0:
        return {"rmse": None, "lower": None, "upper": None, "n_frames": 0, "level": level}
    rng = np.random.default_rng(seed)
    boot = np.sqrt(sq[rng.integers(0, sq.size, size=(n_boot, sq.size))].mean(axis=1))
    tail = (1 - level) / 2
    return {"rmse": 1000 * float(np.sqrt(sq.mean())),
            "lower": 1000 * float(np.quantile(boot, tail)),
            "upper": 1000 * float(np.quantile(boot, 1 - tail)),
            "n_frames": int(sq.size), "level": level}


def pooled_audit(tables: list[pd.DataFrame], *, seed: int = 0, level: float = 0.95) -> dict:
    """:func:`audit_estimate` over the audit frames of several iterations'
    calibration tables (:func:`frame_errors` with an ``iteration`` column),
    with the ``iterations`` they came from. Each table measured the committee
    that sampled it: pooling an older, worse committee's audit only raises the
    estimate (benchmarks/stop_rule.py measures by how much)."""
    pooled = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)
    audit = pooled[pooled["selected_by"] == AUDIT]
    iterations = sorted(int(i) for i in audit["iteration"].unique()) if len(audit) else []
    return {**audit_estimate(audit["true_force_rmse"], seed=seed, level=level),
            "iterations": iterations,
            "energy": audit_energy(audit, seed=seed, level=level)}


def audit_energy(audit: pd.DataFrame, *, seed: int = 0, n_boot: int = 2000,
                 level: float = 0.95) -> dict:
    """The committee's energy errors on the audit frames (meV/atom): the
    RMSE with a bootstrap interval over frames (``rmse``, ``lower``,
    ``upper``), its constant ``offset`` and the ``offset_free_rmse``
    (:func:`alflow.metrics.energy_errors`), and per member the same three
    (``member_rmse``, ``member_offset``, ``member_offset_free_rmse``).
    Frames without a committee energy (sampled before it was recorded) are
    left out; with none, the values are None. The interval is
    :func:`audit_estimate`'s, on the frames' absolute energy errors."""
    cols = [c for c in ("energy_error", "composition", "member_energy_errors") if c in audit]
    frames = audit[cols].dropna(subset=["energy_error"]) if len(cols) == 3 else audit.iloc[:0]
    estimate = audit_estimate(np.abs(frames["energy_error"]) if len(frames) else [],
                              seed=seed, n_boot=n_boot, level=level)
    if frames.empty:
        return {**estimate, "offset": None, "offset_free_rmse": None}
    comps = frames["composition"].astype(str)
    whole = energy_errors(frames["energy_error"], comps)
    members = [energy_errors(col, comps) for col in _member_columns(frames["member_energy_errors"])]
    return {**estimate, "offset": whole["energy_offset_meV_per_atom"],
            "offset_free_rmse": whole["energy_offset_free_rmse_meV_per_atom"],
            "member_rmse": [m["energy_rmse_meV_per_atom"] for m in members],
            "member_offset": [m["energy_offset_meV_per_atom"] for m in members],
            "member_offset_free_rmse": [m["energy_offset_free_rmse_meV_per_atom"] for m in members]}


def _member_columns(cells: pd.Series) -> list[np.ndarray]:
    """Per member, the energy errors of every frame (``;``-separated cells);
    none when the frames disagree on the number of members."""
    rows = [[float(v) for v in str(c).split(";") if v] if pd.notna(c) else [] for c in cells]
    if not rows or not rows[0] or any(len(r) != len(rows[0]) for r in rows):
        return []
    return list(np.asarray(rows).T)


def fit_scale(deviation, error) -> float | None:
    """The scale s of ``error ≈ s × deviation``: the median ratio of the true
    max atomic force error to the committee's deviation over the pairs with a
    finite, positive deviation (robust to the few frames where a committee
    agrees by chance). None without such pairs."""
    d, e = np.asarray(deviation, dtype=float), np.asarray(error, dtype=float)
    ok = np.isfinite(d) & np.isfinite(e) & (d > 0)
    return float(np.median(e[ok] / d[ok])) if ok.any() else None


def ended_early(runs: list[dict]) -> str:
    """``"300 K: deviation at step 162; ..."`` for the MD runs (validation or
    probe) that did not complete."""
    return "; ".join(f"{r['condition']}: {r['ended_by']} at step {r['failed_at_step']}"
                     for r in runs if r["failed_at_step"] is not None)


def stop_decision(audit: dict, survival: float | None, target: float | None,
                  min_survival: float, probe: dict | None = None,
                  energy_target: float | None = None) -> dict:
    """The stop rule: converged when the audit's upper bound on the force RMSE
    is at or below ``target`` (meV/Å), the upper bound on the energy RMSE
    (``audit["energy"]``) at or below ``energy_target`` (meV/atom) when one
    is given, at least ``min_survival`` of the walkers ran their steps
    without stopping and, when there was a production ``probe`` of the same
    committee (:func:`alflow.validation.probe`), every one of its runs
    completed. ``reason`` says which part held it back; no target at all
    (both None) never stops."""
    if target is None and energy_target is None:
        return {"converged": False, "reason": "no convergence.target_force_rmse"}
    met = []
    for name, bound, goal, unit in (
            ("", audit.get("upper"), target, "meV/Å"),
            ("energy ", (audit.get("energy") or {}).get("upper"), energy_target, "meV/atom")):
        if goal is None:
            continue
        if bound is None:
            return {"converged": False, "reason": "no audit frames yet" if not name else
                    "no audit frames with a committee energy yet"}
        if bound > goal:
            return {"converged": False, "reason": f"audit {name}upper bound {bound:.0f} {unit} "
                                                  f"above the target {goal:g}"}
        met.append(f"audit {name}upper bound {bound:.0f} {unit} <= target {goal:g}")
    if survival is None or survival < min_survival:
        shown = "unknown" if survival is None else f"{survival:.2f}"
        return {"converged": False, "reason": f"walker survival {shown} below {min_survival:g}"}
    if probe is not None and not probe["stable"]:
        return {"converged": False, "reason": (
            f"production probe: {sum(r['failed_at_step'] is not None for r in probe['runs'])} "
            f"of {len(probe['runs'])} runs of {probe['steps']} steps ended early "
            f"({ended_early(probe['runs'])})")}
    return {"converged": True, "reason": ", ".join(met) + f", survival {survival:.2f}"
                                         + ("" if probe is None else
                                            f", production probe stable ({len(probe['runs'])} "
                                            f"runs of {probe['steps']} steps)")}
