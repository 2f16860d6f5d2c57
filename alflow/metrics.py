"""Committee accuracy on a labelled test set, and the campaign-wide table."""
from __future__ import annotations

import numpy as np
import pandas as pd
from ase import Atoms

from . import ENERGY_KEY, FORCES_KEY, STRESS_KEY
from .sampling import committee_deviation


def load_committee(model_paths: list[str], device: str = "cpu", dtype: str = "float64"):
    """A mace-torch calculator evaluating every committee member at once."""
    from mace.calculators import MACECalculator  # heavy import: only where needed

    return MACECalculator(model_paths=list(model_paths), device=device, default_dtype=dtype)


PREDICTION_COLUMNS = ["structure", "quantity", "atom", "reference", "predicted", "deviation",
                      "composition"]


def composition(atoms: Atoms) -> str:
    """The reduced formula of a structure (``H2O`` for 8 waters, ``AuCu3``):
    energy offsets are compared per composition, since a constant error per
    element shifts every composition by its own amount per atom."""
    return atoms.get_chemical_formula(empirical=True)


def energy_errors(errors, compositions) -> dict:
    """Energy errors split into a constant offset and the rest, in meV/atom.

    ``errors``: per structure (predicted - reference) / atoms, eV/atom;
    ``compositions``: each structure's :func:`composition`. Returns
    ``energy_rmse_meV_per_atom`` (the plain RMSE), ``energy_offset_meV_per_atom``
    (the mean error over all structures), ``energy_offset_free_rmse_meV_per_atom``
    (the RMSE after subtracting each composition's own mean error: what
    relative energies at one composition see) and ``energy_by_composition``:
    per composition ``n``, ``offset`` and ``offset_free_rmse`` (meV/atom).
    An RMSE far above its offset-free part is an offset, not noise.
    """
    err = 1000 * np.asarray(errors, dtype=float)
    comps = np.asarray(list(compositions), dtype=object)
    if err.size == 0 or err.size != comps.size:
        raise ValueError(f"{err.size} energy errors for {comps.size} compositions")
    by, centred = {}, np.empty_like(err)
    for comp in sorted(set(comps)):
        mask = comps == comp
        offset = float(err[mask].mean())
        centred[mask] = err[mask] - offset
        by[comp] = {"n": int(mask.sum()), "offset": offset,
                    "offset_free_rmse": float(np.sqrt(np.mean(centred[mask] ** 2)))}
    return {"energy_rmse_meV_per_atom": float(np.sqrt(np.mean(err ** 2))),
            "energy_offset_meV_per_atom": float(err.mean()),
            "energy_offset_free_rmse_meV_per_atom": float(np.sqrt(np.mean(centred ** 2))),
            "energy_by_composition": by}


ENERGY_SUMMARY = ("energy_rmse_meV_per_atom", "energy_offset_meV_per_atom",
                  "energy_offset_free_rmse_meV_per_atom")


def offset_dominates(errors: dict, factor: float = 2.0) -> bool:
    """Whether an energy RMSE is mostly a constant offset: above ``factor`` x
    its offset-free part (:func:`energy_errors`)."""
    rmse = errors.get("energy_rmse_meV_per_atom")
    free = errors.get("energy_offset_free_rmse_meV_per_atom")
    return rmse is not None and free is not None and rmse > factor * free


def evaluate(calc, frames: list[Atoms], return_predictions: bool = False):
    """Energy and force errors of the committee mean (and of each member).

    Energies come as :func:`energy_errors`: the RMSE, its constant offset
    and the offset-free RMSE (per composition), for the committee mean and,
    under ``member_*`` (lists, one value per member), for each member.
    With ``return_predictions`` also a long table for parity plots: one row
    per structure (``quantity`` = ``energy``, eV/atom) and one per force
    component (``force``, eV/Å, ``atom`` its index), with the reference, the
    committee mean, the structure's committee deviation and its composition.
    """
    if not frames:
        raise ValueError("nothing to evaluate: the set of labelled structures is empty")
    e_err, comps, f_err, s_err, member_f_err, member_e_err, devs, rows = ([] for _ in range(8))
    for k, atoms in enumerate(frames):
        ref_e, ref_f = atoms.info[ENERGY_KEY], atoms.arrays[FORCES_KEY]
        probe = atoms.copy()
        probe.calc = calc
        n = len(atoms)
        pred_e, pred_f = probe.get_potential_energy(), probe.get_forces()
        e_err.append((pred_e - ref_e) / n)
        comps.append(composition(atoms))
        f_err.append((pred_f - ref_f).ravel())
        if STRESS_KEY in atoms.info and np.all(atoms.pbc):  # Voigt, eV/Å^3
            s_err.append(probe.get_stress(voigt=True) - np.asarray(atoms.info[STRESS_KEY]))
        comm = calc.results.get("forces_comm")
        if comm is not None:
            member_f_err.append((np.asarray(comm) - ref_f).reshape(len(comm), -1))
        member_e = calc.results.get("energy_comm")
        member_e_err.append((np.ravel(member_e if member_e is not None else [pred_e]) - ref_e) / n)
        devs.append(committee_deviation(calc))
        if return_predictions:
            rows.append(pd.DataFrame({
                "structure": k, "quantity": ["energy"] + ["force"] * (3 * n),
                "atom": np.concatenate([[-1], np.repeat(np.arange(n), 3)]),
                "reference": np.concatenate([[ref_e / n], np.ravel(ref_f)]),
                "predicted": np.concatenate([[pred_e / n], np.ravel(pred_f)]),
                "deviation": devs[-1], "composition": comps[-1]}))
    f_all = np.concatenate(f_err)
    energies = energy_errors(e_err, comps)
    out = {
        "n_structures": len(frames),
        **energies,
        "force_rmse_meV_per_A": 1000 * float(np.sqrt(np.mean(f_all ** 2))),
        "force_mae_meV_per_A": 1000 * float(np.mean(np.abs(f_all))),
        # over the 6 Voigt components of the test frames that carry a stress
        "stress_rmse_meV_per_A3": (1000 * float(np.sqrt(np.mean(np.square(s_err))))
                                   if s_err else None),
        "committee_force_dev_mean": float(np.mean(devs)),
    }
    if member_f_err:
        per_member = np.concatenate(member_f_err, axis=1)
        out["member_force_rmse_meV_per_A"] = [
            1000 * float(np.sqrt(np.mean(m ** 2))) for m in per_member]
    members = [energy_errors(col, comps) for col in np.asarray(member_e_err).T]
    for key in ENERGY_SUMMARY:
        out["member_" + key] = [m[key] for m in members]
    if return_predictions:
        return out, pd.concat(rows, ignore_index=True)[PREDICTION_COLUMNS]
    return out


HEADLINE = ["iteration", "n_labels", "n_new_labels", "n_label_failed", "n_label_excluded",
            "label_failures_high",
            "n_frames",
            "walkers_stopped", "accurate_ratio", "trust_lo", "trust_hi", "calib_spearman",
            "calib_error", "calib_scale", "converged", "energy_rmse_meV_per_atom",
            "energy_offset_meV_per_atom", "energy_offset_free_rmse_meV_per_atom",
            "force_rmse_meV_per_A", "audit_force_rmse", "audit_upper", "audit_energy_rmse",
            "audit_energy_upper", "stress_rmse_meV_per_A3", "core_hours", "gpu_hours"]

STATS_COLUMNS = ("n_frames", "accurate_ratio", "n_selected", "n_selected_random",
                 "n_past_hi_selected", "n_walkers", "n_walkers_restarted", "walker_steps_mean",
                 "trust_lo", "trust_hi", "converged")


def campaign_row(iteration: int, dataset: dict, metrics: dict, stats: dict | None = None,
                 calibration: dict | None = None, audit: dict | None = None) -> dict:
    """One iteration's row of the campaign table, from its small JSON products.

    ``calib_spearman``/``calib_error``: rank correlation between the deviation
    of the committee that chose this iteration's frames and its true max force
    error on them, and the mean of that error (eV/Å); ``calib_scale``: true
    error / deviation. ``audit``: the audit estimate of *this row's* committee
    (made in the next iteration, from frames its walkers explored), shown as
    ``audit_force_rmse`` and ``audit_upper`` (meV/Å) next to its test RMSE.
    ``converged`` is True from the iteration whose select or calibrate
    decided the stop. Energies: the test set's RMSE, offset and offset-free
    RMSE (meV/atom, :func:`energy_errors`), the same on the training set
    (``train_*``) and on the audit frames (``audit_energy_*``).
    """
    stats, calibration = stats or {}, calibration or {}
    row = {"iteration": iteration,
           **{k: v for k, v in dataset.items() if not isinstance(v, dict)},
           "n_labels": dataset.get("n_train", 0) + dataset.get("n_valid", 0)}
    row |= {k: stats.get(k) for k in STATS_COLUMNS}
    row["walkers_stopped"] = stats.get("n_walkers_stopped_early")
    row["calib_spearman"] = calibration.get("spearman")
    row["calib_error"] = calibration.get("mean_true_error")
    row["calib_share_above_lo"] = calibration.get("share_above_trust_lo")
    row["calib_scale"] = calibration.get("scale")
    row["converged"] = bool(stats.get("converged") or calibration.get("converged")) \
        if stats or calibration else None
    row["stop_reason"] = calibration.get("stop_reason")
    row["audit_force_rmse"] = (audit or {}).get("rmse")
    row["audit_upper"] = (audit or {}).get("upper")
    row["audit_n_frames"] = (audit or {}).get("n_frames")
    energy = (audit or {}).get("energy") or {}
    for key in ("rmse", "upper", "offset", "offset_free_rmse"):
        row[f"audit_energy_{key}"] = energy.get(key)
    train = metrics.get("train") or {}
    row |= {f"train_{k}": train.get(k) for k in ENERGY_SUMMARY + ("force_rmse_meV_per_A",)}
    return row | {k: v for k, v in metrics.items() if not isinstance(v, dict)}


def campaign_table(rows: list[dict]) -> pd.DataFrame:
    """One row per iteration, in iteration order, with the headline figures first."""
    df = pd.DataFrame(rows).sort_values("iteration").reset_index(drop=True)
    cols = [c for c in HEADLINE if c in df] + [c for c in df if c not in HEADLINE]
    return df[cols]


def headline(table: pd.DataFrame) -> pd.DataFrame:
    """The columns worth printing on a terminal."""
    return table[[c for c in HEADLINE if c in table]]


def energy_report(test: dict, train: dict | None = None, audit: dict | None = None) -> dict:
    """The final committee's energy errors (meV/atom) for the model card and
    the validation summary: RMSE, constant offset and offset-free RMSE on the
    test set, the training set and the audit frames, each member's, and
    whether the offset dominates the test RMSE (:func:`offset_dominates`)."""
    def part(m: dict | None) -> dict | None:
        return {k: m.get(k) for k in ENERGY_SUMMARY} if m else None

    energy = (audit or {}).get("energy") or {}
    return {
        "test": part(test), "train": part(train),
        "audit": ({"energy_rmse_meV_per_atom": energy["rmse"],
                   "energy_offset_meV_per_atom": energy.get("offset"),
                   "energy_offset_free_rmse_meV_per_atom": energy.get("offset_free_rmse"),
                   "lower": energy.get("lower"), "upper": energy.get("upper"),
                   "n_frames": energy.get("n_frames")} if energy.get("rmse") is not None else None),
        "by_composition": test.get("energy_by_composition"),
        "members": {k: test.get("member_" + k) for k in ENERGY_SUMMARY},
        "offset_dominates": offset_dominates(test),
    }
