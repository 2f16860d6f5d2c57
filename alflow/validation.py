"""Is the final potential ready for production? Long MD with the final
committee at the sampled conditions and a hotter one: how long it stays
stable, and whether its structure (radial distribution functions) matches MD
with the reference itself. Also what the model card says about a campaign."""
from __future__ import annotations

import math
import subprocess
import sys
from itertools import combinations_with_replacement
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_masses
from ase.geometry.rdf import get_rdf

from . import DEVIATION_KEY
from .calibration import ended_early
from .sampling import STOP_KEY, Walker, explore_pack, fresh
from .selection import is_sane

#: ``sane`` failure reason: two atoms closer than the sanity limit
OVERLAP = "overlap"


def conditions(temperatures, pressures, hot_factor: float) -> list[dict]:
    """Every sampled (temperature, pressure), then one harder condition: the
    highest temperature times ``hot_factor`` (at the first pressure)."""
    ps = list(pressures) if pressures else [None]
    out = [{"temperature": float(t), "pressure": p, "kind": "sampled"}
           for t in temperatures for p in ps]
    if hot_factor and hot_factor != 1:
        out.append({"temperature": float(hot_factor * max(temperatures)), "pressure": ps[0],
                    "kind": "hot"})
    return out


def first_failure(frames: list[Atoms], stop_reason: str, steps_done: int,
                  min_distance_fraction: float) -> tuple[int | None, str]:
    """The first step at which a validation run failed, and why: the MD's own
    stop (``deviation``: the committee's predicted error past the cap,
    ``non_finite`` forces) or an earlier saved frame with two atoms closer
    than ``min_distance_fraction`` x the sum of their covalent radii
    (``overlap``). ``(None, "completed")`` when it ran to the end."""
    for atoms in frames:
        if STOP_KEY in atoms.info:
            break
        if not is_sane(atoms, min_distance_fraction):
            return int(atoms.info["step"]), OVERLAP
    if stop_reason == "completed":
        return None, "completed"
    return int(steps_done), stop_reason


def stable_frames(frames: list[Atoms], failed_at: int | None) -> list[Atoms]:
    """The frames before a run's failure (all of them for a completed run)."""
    return [a for a in frames if STOP_KEY not in a.info
            and (failed_at is None or a.info["step"] < failed_at)]


def element_pairs(symbols) -> list[tuple[str, str]]:
    return list(combinations_with_replacement(sorted(set(symbols)), 2))


def _heights(atoms: Atoms) -> np.ndarray:
    """Distances between opposite faces of the cell (Å)."""
    cell = np.asarray(atoms.cell)
    return atoms.cell.volume / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)


def fit_cell(atoms: Atoms, rmax: float) -> Atoms:
    """The frame repeated along its periodic directions until a sphere of
    radius ``rmax`` fits (ASE's condition for an RDF): the same periodic
    structure, so the same g(r), also beyond half the original cell."""
    if not atoms.pbc.any():
        return atoms
    reps = [int(np.ceil(2 * rmax / h * 1.0001)) if periodic else 1
            for h, periodic in zip(_heights(atoms), atoms.pbc)]
    return atoms.repeat(reps) if max(reps) > 1 else atoms


def rdf(frames: list[Atoms], pair: tuple[str, str], rmax: float,
        nbins: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """The partial radial distribution function of ``pair`` averaged over
    ``frames`` (ASE's ``get_rdf``, cells repeated as :func:`fit_cell`):
    bin centres (Å) and g(r)."""
    g, r = get_rdf([fit_cell(a, rmax) for a in frames], rmax, nbins, elements=pair)
    return np.asarray(r), np.asarray(g)


def rdf_distance(r, g1, g2) -> float:
    """Integrated absolute difference of two RDFs on the same bins (Å):
    0 for identical structure, growing as peaks move or change height."""
    r = np.asarray(r, float)
    width = r[1] - r[0] if len(r) > 1 else 0.0
    return float(np.sum(np.abs(np.asarray(g1, float) - np.asarray(g2, float))) * width)


def density(frames: list[Atoms]) -> float | None:
    """Mean mass density (g/cm³) of periodic frames; None without a cell."""
    vols = [a.get_volume() for a in frames if a.pbc.all() and a.cell.volume > 0]
    if not vols:
        return None
    mass = float(np.sum(atomic_masses[frames[0].numbers]))  # amu
    return float(mass * 1.66053906660 / np.mean(vols))


def deviation_shares(frames: list[Atoms], lo: float, hi: float) -> dict:
    """Shares of frames the committee itself calls accurate (deviation below
    ``lo``), candidate, or failed (at or above ``hi``, or non-finite)."""
    devs = np.array([a.info.get(DEVIATION_KEY, np.nan) for a in frames], float)
    if devs.size == 0:
        return {"accurate": None, "candidate": None, "failed": None, "n_frames": 0}
    ok = np.isfinite(devs)
    return {"accurate": float(np.mean(ok & (devs < lo))),
            "candidate": float(np.mean(ok & (devs >= lo) & (devs < hi))),
            "failed": float(np.mean(~ok | (devs >= hi))), "n_frames": int(devs.size)}


def compare_rdfs(frames: list[Atoms], reference: list[Atoms], rmax: float,
                 nbins: int = 60) -> dict:
    """Per element pair: the RDFs of ``frames`` and of the reference frames
    and their distance; empty when either side has no frames."""
    if not frames or not reference:
        return {}
    out = {}
    for pair in element_pairs(frames[0].get_chemical_symbols()):
        r, g = rdf(frames, pair, rmax, nbins)
        _, g_ref = rdf(reference, pair, rmax, nbins)
        out["-".join(pair)] = {"distance": rdf_distance(r, g, g_ref), "r": r.tolist(),
                               "g": g.tolist(), "g_reference": g_ref.tolist()}
    return out


def verdict(runs: list[dict]) -> dict:
    """Per condition: the share of seeds that ran to the end, and the
    earliest failure; ``stable`` when every run of every condition completed."""
    done = [r["failed_at_step"] is None for r in runs]
    return {"stable": all(done), "survival": float(np.mean(done)) if done else None}


def probe(calc, initial: list[Atoms], temperatures, pressures, *, seeds: int, steps: int,
          seed: int, hi: float, min_distance_fraction: float, timestep_fs: float,
          friction: float, save_every: int = 10, batched: bool = True, batch_size: int = 16,
          progress=print) -> dict:
    """The production probe before a target stop: :func:`run_validation` of
    the committee that the audit measured, at the sampled conditions only
    (no hotter one, no RDFs), capped at the deviation ``hi`` where its walkers
    stop. A walker segment is shorter than the MD a user runs; this is the
    check that the committee survives longer MD. Returns ``{"stable",
    "survival", "steps", "runs"}``, each run with its condition, seed and
    where it ended."""
    out = run_validation(calc, initial, conditions(temperatures, pressures, 1), seeds=seeds,
                         steps=steps, seed=seed, lo=0.0, hi=hi,
                         min_distance_fraction=min_distance_fraction, reference=[],
                         rdf_rmax=1.0, timestep_fs=timestep_fs, save_every=save_every,
                         friction=friction, batched=batched, batch_size=batch_size,
                         progress=progress)
    runs = [{k: r[k] for k in ("condition", "seed", "failed_at_step", "ended_by")}
            for r in out["runs"]]
    return {"stable": out["summary"]["stable"], "survival": out["summary"]["survival"],
            "steps": steps, "runs": runs}


def instability_warning(summary: dict, where: str) -> str | None:
    """What the user must read when production MD of the final committee was
    not stable (None when it was): which runs ended, where, and what to do.
    A committee can meet its target on the test set and in the audit and
    still not survive longer MD (benchmarks/RESULTS.md, "own MD")."""
    if summary["stable"]:
        return None
    failed = [r for c in summary["conditions"].values() for r in c["stability"]["runs"]
              if r["failed_at_step"] is not None]
    n = sum(len(c["stability"]["runs"]) for c in summary["conditions"].values())
    what = ended_early(failed)
    return (f"WARNING (validate): the final committee is NOT stable in production MD: "
            f"{len(failed)} of {n} runs of {summary['steps']} steps ended early ({what}). Do not "
            f"use it for MD at these conditions before more iterations (raise `iterations`; if "
            f"the campaign stopped on its target, lower convergence.target_force_rmse). "
            f"Details: {where}")


def level_of_theory_summary(reference: dict, template_tree: dict | None) -> dict:
    """What the model card says about the reference: kind, and for CP2K the
    method, XC functional and basis sets read from the template."""
    out = {"kind": reference["kind"]}
    if reference["kind"] == "ase":
        out["calculator"] = reference["ase"]["calculator"]
        return out
    force_eval = (template_tree or {}).get("+force_eval", [{}])
    force_eval = force_eval[0] if isinstance(force_eval, list) else force_eval
    dft = force_eval.get("+dft", {})
    out["method"] = dft.get("+qs", {}).get("method", "gpw")
    functional = dft.get("+xc", {}).get("+xc_functional", {}).get("_")
    if functional:
        out["xc_functional"] = functional
    kinds = force_eval.get("+subsys", {}).get("+kind", [])
    basis = {k.get("_"): k.get("basis_set") for k in kinds if k.get("basis_set")}
    if basis:
        out["basis_sets"] = basis
    return out


def finite(value) -> float | None:
    """JSON-safe float: None for NaN or infinity."""
    return None if value is None or not math.isfinite(value) else float(value)


def card_markdown(card: dict) -> str:
    """The model card as a short Markdown page (the JSON has every field)."""
    lot = card["level_of_theory"]
    theory = ", ".join(f"{k}: {v}" for k, v in lot.items())
    test, audit, val = card["test_set"], card["audit"], card["validation"]
    lines = [
        "# Model card", "",
        f"- **Model**: `{card['model']['file']}` ({card['model']['dtype']}), "
        f"{card['model']['which']}",
        f"- **LAMMPS**: " + (f"`{card['model']['lammps']['file']}`"
                             if card["model"]["lammps"]["made"]
                             else f"not made here ({'; '.join(card['model']['lammps'].get('error', []))})"),
        f"- **Level of theory**: {theory}",
        f"- **Training set**: {card['training_set']['n_train']} training + "
        f"{card['training_set']['n_valid']} validation structures, elements "
        f"{', '.join(card['training_set']['elements'])}" + (
            f"; labels with an atomic force above {card['training_set']['max_force_eV_per_A']:g}"
            " eV/Å left out" if card["training_set"].get("max_force_eV_per_A") else ""),
        f"- **Sampled conditions**: {card['sampled_conditions']['temperatures_K']} K, "
        f"pressures {card['sampled_conditions']['pressures_GPa']} GPa",
        f"- **Test set** ({test['n_structures']} structures): force RMSE "
        f"{_num(test['force_rmse_meV_per_A'])} meV/Å, energy RMSE "
        f"{_num(test['energy_rmse_meV_per_atom'])} meV/atom",
        "- **Audit** (the campaign's own unbiased estimate): " + (
            f"force RMSE {_num(audit['rmse'])} meV/Å, {int(100 * audit['level'])} % interval "
            f"[{_num(audit['lower'])}, {_num(audit['upper'])}], {audit['n_frames']} frames"
            if audit else "none"),
        *_energy_lines(card.get("energy")),
        f"- **Calibration**: error/deviation scale {_num(card['calibration']['scale'])}, "
        f"Spearman {_num(card['calibration']['spearman'])}",
        f"- **Converged**: {card['converged']} ({card['stop_reason']})",
        f"- **Validation**: {'stable' if val['stable'] else 'NOT stable'}, "
        f"{val['steps']} steps per run; " + "; ".join(
            f"{name}: survival {_num(c['survival'])}"
            + "".join(f", RDF {k} {_num(d)} Å" for k, d in c["rdf_distance"].items())
            for name, c in val["conditions"].items()),
        "- **Software**: " + ", ".join(f"{k} {v}" for k, v in card["software"].items()),
        "", "```python",
        "from mace.calculators import MACECalculator",
        f"atoms.calc = MACECalculator(model_paths='{card['model']['file']}', device='cpu',",
        f"                            default_dtype='{card['model']['dtype']}')",
        "```", ""]
    return "\n".join(lines)


def _energy_lines(energy: dict | None) -> list[str]:
    """The card's energy errors: RMSE, its constant offset and the rest, on
    the test set, the training set and the audit frames, and a plain word
    when the offset dominates."""
    if not energy:
        return []
    parts = []
    for name, e in (("test", energy.get("test")), ("training", energy.get("train")),
                    ("audit", energy.get("audit"))):
        if e and e.get("energy_rmse_meV_per_atom") is not None:
            parts.append(f"{name} RMSE {_num(e['energy_rmse_meV_per_atom'])} (offset "
                         f"{_num(e['energy_offset_meV_per_atom'])}, offset-free RMSE "
                         f"{_num(e['energy_offset_free_rmse_meV_per_atom'])})")
    lines = ["- **Energies** (meV/atom; offset: the mean error, offset-free: the RMSE after "
             "subtracting each composition's mean error; for one composition RMSE² = offset² "
             "+ offset-free²): " + "; ".join(parts)]
    if energy.get("offset_dominates"):
        lines.append("- **The energy error is mostly an offset** (the RMSE is more than twice "
                     "its offset-free part): energy differences between structures of one "
                     "composition like those of the test set are accurate to about the "
                     "offset-free RMSE; absolute energies, and energies compared across "
                     "compositions or with structures unlike the test set, are not.")
    return lines


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def deployable_model(source: str, target: str, dtype: str) -> None:
    """A copy of the MACE model ``source`` in precision ``dtype`` (float32:
    faster MD), written atomically to ``target``."""
    import torch

    model = torch.load(source, map_location="cpu", weights_only=False)
    model = model.to(torch.float32 if dtype == "float32" else torch.float64)
    tmp = Path(target).with_suffix(".tmp")
    torch.save(model, tmp)
    tmp.replace(target)


def lammps_export(model: str) -> dict:
    """mace-torch's own LAMMPS export (``mace_create_lammps_model``) of
    ``model``: the file it made, or why it could not be made."""
    exe = Path(sys.executable).parent / "mace_create_lammps_model"
    try:
        proc = subprocess.run([str(exe), model], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"file": None, "made": False, "error": [str(exc)]}
    made = Path(f"{model}-lammps.pt")
    if proc.returncode != 0 or not made.exists():
        return {"file": None, "made": False,
                "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]}
    return {"file": made.name, "made": True,
            "use": f"pair_style mace no_domain_decomposition; pair_coeff * * {made.name} "
                   "<elements in LAMMPS type order>"}


def condition_name(c: dict) -> str:
    return (f"{c['temperature']:g} K" + ("" if c["pressure"] is None else f", {c['pressure']:g} GPa")
            + (" (hot)" if c["kind"] == "hot" else ""))


def run_validation(calc, initial: list[Atoms], conds: list[dict], *, seeds: int, steps: int,
                   seed: int, lo: float, hi: float, min_distance_fraction: float,
                   reference: list[Atoms], rdf_rmax: float, timestep_fs: float,
                   save_every: int, friction: float, batched: bool = True,
                   batch_size: int = 16, progress=print) -> dict:
    """Production MD with ``calc`` (the final committee: its mean forces, its
    deviation recorded) from the initial structures, ``seeds`` runs per
    condition of ``conds``, all batched like the walkers. A run stops at the
    deviation ``hi`` or at non-finite forces; an earlier frame with
    overlapping atoms also ends it (:func:`first_failure`). RDFs of the stable
    frames after the first 20 % of the steps are compared with the
    ``reference`` frames of the same temperature (sampled conditions only).

    Returns ``summary`` (the JSON: verdict and per condition ``stability``,
    ``rdf``, ``density_g_cm3`` under NPT, ``deviation`` shares), ``runs``
    (one record per run), ``trace`` (step and deviation of every saved
    frame), ``frames`` (the trajectories) and ``rdfs`` (the curves).
    """
    walkers, of = [], []
    for c in conds:
        for k in range(seeds):
            walkers.append(Walker(index=len(walkers), temperature=c["temperature"],
                                  pressure=c["pressure"], structure=k % len(initial)))
            of.append((c, k))
    starts = [(fresh(initial[w.structure]), "initial") for w in walkers]
    done = explore_pack(walkers, starts, calc, seeds=[seed * 7727 + w.index for w in walkers],
                        batched=batched, batch_size=batch_size, steps=steps, trusted=[],
                        max_restarts=0, timestep_fs=timestep_fs, save_every=save_every,
                        friction=friction, trust_hi=hi, progress=progress)
    out = {"runs": [], "trace": [], "frames": [], "rdfs": {}, "conditions": {}}
    for c in conds:
        name = condition_name(c)
        mine = [(run, k) for run, (cc, k) in zip(done, of) if cc is c]
        runs, kept = [], []
        for run, k in mine:
            failed_at, reason = first_failure(run.frames, run.record["stop_reason"],
                                              run.record["steps"], min_distance_fraction)
            kept += [a for a in stable_frames(run.frames, failed_at)
                     if a.info["step"] >= 0.2 * steps]  # past equilibration
            runs.append({"condition": name, "seed": k, "failed_at_step": failed_at,
                         "ended_by": reason, "steps_run": steps if failed_at is None else failed_at,
                         "time_to_failure_ps": (None if failed_at is None
                                                else failed_at * timestep_fs / 1000)})
            out["trace"] += [{"run": f"{name} · seed {k}", "step": a.info["step"],
                              "deviation": a.info.get(DEVIATION_KEY)} for a in run.frames]
            for a in run.frames:
                a.info["condition"] = name
            out["frames"] += run.frames
        same_t = [a for a in reference if c["kind"] == "sampled"
                  and abs(a.info.get("temperature", -1) - c["temperature"]) < 1e-6]
        rdfs = compare_rdfs(kept, same_t, rdf_rmax)
        out["runs"] += runs
        out["rdfs"][name] = rdfs
        out["conditions"][name] = {
            **c, "stability": {**verdict(runs), "runs": runs},
            "rdf": {pair: {"distance": d["distance"]} for pair, d in rdfs.items()},
            "rdf_reference": (f"{len(same_t)} reference-MD frames at {c['temperature']:g} K"
                              if same_t else "no reference MD at this condition"),
            "density_g_cm3": density(kept) if c["pressure"] is not None else None,
            "deviation": deviation_shares([a for run, _ in mine for a in run.frames], lo, hi)}
    overall = verdict(out["runs"])
    out["summary"] = {"stable": overall["stable"], "survival": overall["survival"],
                      "steps": steps, "seeds": seeds, "timestep_fs": timestep_fs,
                      "conditions": out.pop("conditions")}
    return out
