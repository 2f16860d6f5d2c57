"""MD walkers driven by the committee, with per-frame committee deviation.

A walker is one MD trajectory at one thermodynamic condition. Walkers are
grouped into packs; one process runs a pack and loads the committee once.
Each iteration a walker continues from its last trusted state of the
previous iteration (positions, cell and momenta).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.langevinbaoab import LangevinBAOAB
from ase.constraints import FixCom
from ase.md.velocitydistribution import Stationary, thermalize_momenta

from . import DEVIATION_KEY

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Walker:
    index: int
    temperature: float  # K
    pressure: float | None  # GPa; None = NVT
    structure: int  # which initial structure it starts from


def make_walkers(temperatures: list[float], pressures: list[float] | None,
                 per_condition: int, n_structures: int) -> list[Walker]:
    """The walker grid: every (temperature, pressure) condition x per_condition copies."""
    conditions = [(t, p) for t in temperatures for p in (pressures or [None])]
    walkers = []
    for t, p in conditions:
        for _ in range(per_condition):
            w = len(walkers)
            walkers.append(Walker(w, float(t), None if p is None else float(p), w % n_structures))
    return walkers


def pack_walkers(walkers: list[Walker], n_packs: int, pack: int) -> list[Walker]:
    """Walkers run by ``pack`` (walker w belongs to pack w mod n_packs)."""
    return [w for w in walkers if w.index % n_packs == pack]


def force_deviation(forces_comm: np.ndarray) -> float:
    """Max over atoms of the committee force standard deviation (eV/Å).

    ``forces_comm`` has shape (n_models, n_atoms, 3); for each atom the
    deviation is sqrt(mean_m |F_m - <F>|^2), as in DP-GEN's max_devi_f.
    """
    forces_comm = np.asarray(forces_comm, dtype=float)
    mean = forces_comm.mean(axis=0)
    per_atom = np.sqrt(((forces_comm - mean) ** 2).sum(axis=-1).mean(axis=0))
    return float(per_atom.max()) if np.all(np.isfinite(per_atom)) else float("nan")


def committee_deviation(calc) -> float:
    """Force deviation from a calculator's last results.

    Works with mace-torch's MACECalculator, which stores ``forces_comm``
    for a committee; a calculator without it has deviation 0.
    """
    forces = calc.results.get("forces")
    if forces is None or not np.all(np.isfinite(forces)):
        return float("nan")
    comm = calc.results.get("forces_comm")
    return 0.0 if comm is None else force_deviation(comm)


@dataclass
class WalkerResult:
    frames: list[Atoms]  # saved frames, each with info[DEVIATION_KEY]
    state: Atoms  # last trusted state, to continue from next iteration
    steps_done: int
    stop_reason: str  # "completed", "deviation", "non_finite"


def run_walker(atoms: Atoms, calc, walker: Walker, *, steps: int, timestep_fs: float,
               save_every: int, friction: float, trust_hi: float, seed: int,
               progress: Callable[[str], None] = log.info) -> WalkerResult:
    """Run one walker and record frames with their committee deviation.

    The walker stops early when the deviation reaches ``trust_hi`` or the
    forces become non-finite; that last frame is kept in ``frames`` (it
    counts as failed in the selection statistics) but the state to continue
    from is the last frame below ``trust_hi``.
    """
    atoms = atoms.copy()
    atoms.calc = calc
    rng = np.random.default_rng(seed)
    if not np.any(atoms.get_momenta()):
        thermalize_momenta(atoms, walker.temperature, rng=rng)
        Stationary(atoms)
    dyn = _integrator(atoms, walker, timestep_fs, friction, rng)
    frames: list[Atoms] = []
    state = _snapshot(atoms, walker, 0, None)
    reason = "completed"
    step = 0
    for step, _ in enumerate(dyn.irun(steps)):
        dev = committee_deviation(calc)
        trusted = np.isfinite(dev) and dev < trust_hi
        if step % save_every == 0 or not trusted:
            frames.append(_snapshot(atoms, walker, step, dev))
        if not trusted:
            reason = "deviation" if np.isfinite(dev) else "non_finite"
            break
        state = _snapshot(atoms, walker, step, dev)
    progress(f"walker {walker.index} (T={walker.temperature:g} K"
             f"{'' if walker.pressure is None else f', P={walker.pressure:g} GPa'}): "
             f"{step} steps, {len(frames)} frames, stop: {reason}")
    return WalkerResult(frames, state, step, reason)


def _integrator(atoms: Atoms, walker: Walker, timestep_fs: float, friction: float, rng):
    dt = timestep_fs * units.fs
    if walker.pressure is None:
        atoms.set_constraint(FixCom())  # ASE's recommended way to keep the centre of mass
        return Langevin(atoms, timestep=dt, temperature_K=walker.temperature,
                        friction=friction / units.fs, fixcm=False, rng=rng)
    t_tau = 1.0 / friction * units.fs
    return LangevinBAOAB(atoms, timestep=dt, temperature_K=walker.temperature,
                         externalstress=-walker.pressure * units.GPa, hydrostatic=True,
                         T_tau=t_tau, P_tau=20 * t_tau, rng=rng)


def _snapshot(atoms: Atoms, walker: Walker, step: int, dev: float | None) -> Atoms:
    snap = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc,
                 momenta=atoms.get_momenta())
    snap.info.update(walker=walker.index, temperature=walker.temperature, step=step)
    if walker.pressure is not None:
        snap.info["pressure"] = walker.pressure
    if dev is not None:
        snap.info[DEVIATION_KEY] = dev
    return snap
