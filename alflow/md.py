"""Unlabelled frames of plain ASE MD with one calculator.

:func:`md_plan` spreads a number of frames over temperatures and initial
structures; :func:`ase_md_frames` runs one Langevin NVT MD (the sampling
walkers' integrator) with any ASE calculator and keeps decorrelated frames;
:func:`model_md_frames` runs a whole plan with one calculator, e.g. a
foundation model for the ``foundation_md`` bootstrap.  The reference-MD test
set (:mod:`alflow.refmd`) uses the plan and, for ASE references, the MD.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from ase import Atoms
from ase.md.velocitydistribution import Stationary, thermalize_momenta

from .sampling import Walker, langevin_integrator

__all__ = [
    "MdRun",
    "ase_md_frames",
    "bare_frame",
    "check_md_settings",
    "md_plan",
    "model_md_frames",
]


@dataclass(frozen=True)
class MdRun:
    """One MD run: ``n_frames`` frames at ``temperature`` from initial structure ``structure``."""

    index: int
    temperature: float  # K
    structure: int
    n_frames: int


def md_plan(n_frames: int, temperatures: Sequence[float], n_structures: int) -> list[MdRun]:
    """The MD runs giving ``n_frames`` frames, deterministic.

    Frame ``k`` goes to temperature ``k mod len(temperatures)`` and to initial
    structure ``(k // len(temperatures)) mod n_structures``; frames with the
    same (temperature, structure) share one run.  Runs are listed in order of
    their first frame; runs without frames are left out.
    """
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    if not temperatures:
        raise ValueError("at least one temperature is needed")
    if n_structures < 1:
        raise ValueError(f"n_structures must be >= 1, got {n_structures}")
    counts: Counter[tuple[int, int]] = Counter()
    for k in range(n_frames):
        counts[(k % len(temperatures), (k // len(temperatures)) % n_structures)] += 1
    return [MdRun(r, float(temperatures[t]), s, n) for r, ((t, s), n) in enumerate(counts.items())]


def check_md_settings(n_frames: int, equilibration_steps: int, interval_steps: int,
                      timestep_fs: float) -> None:
    """Raise :class:`ValueError` naming the first unusable MD setting."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if equilibration_steps < 0:
        raise ValueError(f"equilibration_steps must be >= 0, got {equilibration_steps}")
    if interval_steps < 1:
        raise ValueError(f"interval_steps must be >= 1, got {interval_steps}")
    if not timestep_fs > 0:
        raise ValueError(f"timestep_fs must be > 0, got {timestep_fs}")


def bare_frame(numbers: Any, positions: Any, template: Atoms, temperature: float, origin: str) -> Atoms:
    """An MD frame: numbers, positions, the template's cell and pbc, and
    ``info`` ``{"origin": origin, "temperature": temperature}``, nothing else."""
    frame = Atoms(numbers, positions, cell=template.cell, pbc=template.pbc)
    frame.info.update(origin=origin, temperature=float(temperature))
    return frame


def ase_md_frames(
    atoms: Atoms,
    calc: Any,
    temperature: float,
    n_frames: int,
    *,
    timestep_fs: float,
    equilibration_steps: int,
    interval_steps: int,
    friction: float,
    seed: int,
) -> list[Atoms]:
    """``n_frames`` frames of ASE Langevin NVT MD of ``atoms`` with ``calc``.

    Maxwell-Boltzmann start velocities (no centre-of-mass motion, which is
    kept fixed) and the Langevin noise come from ``numpy.random.default_rng
    (seed)``; the same integrator as the sampling walkers
    (:func:`alflow.sampling.langevin_integrator`, ``friction`` in 1/fs).  After
    ``equilibration_steps`` steps one frame is kept every ``interval_steps``
    steps.  Frames carry numbers, positions, cell, pbc and ``info``
    ``{"origin": "md:<T>K:<step>", "temperature": T}``.
    """
    check_md_settings(n_frames, equilibration_steps, interval_steps, timestep_fs)
    work = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    work.calc = calc
    rng = np.random.default_rng(seed)
    thermalize_momenta(work, temperature, rng=rng)
    Stationary(work)
    dyn = langevin_integrator(work, Walker(0, float(temperature), None, 0), timestep_fs, friction, rng)
    frames: list[Atoms] = []
    for _ in dyn.irun(equilibration_steps + n_frames * interval_steps):
        step = dyn.nsteps
        if step <= equilibration_steps or (step - equilibration_steps) % interval_steps:
            continue
        if not np.all(np.isfinite(work.positions)):
            raise RuntimeError(f"ASE MD at {temperature:g} K: non-finite positions at step {step}")
        frames.append(bare_frame(work.numbers, work.positions, atoms, temperature,
                                 f"md:{temperature:g}K:{step}"))
    return frames


def model_md_frames(
    calc: Any,
    structures: Sequence[Atoms],
    temperatures: Sequence[float],
    n_frames: int,
    *,
    timestep_fs: float,
    equilibration_steps: int,
    interval_steps: int,
    friction: float,
    seed: int,
    tag: str,
) -> list[Atoms]:
    """``n_frames`` unlabelled frames of ASE MD with one calculator (e.g. a
    foundation model) following :func:`md_plan`; run ``r`` uses seed
    ``seed + r``. Frame ``k`` has ``info["origin"] = "<tag>:<T>K:<k>"``."""
    frames: list[Atoms] = []
    for run in md_plan(n_frames, temperatures, len(structures)):
        frames += ase_md_frames(structures[run.structure], calc, run.temperature, run.n_frames,
                                timestep_fs=timestep_fs, equilibration_steps=equilibration_steps,
                                interval_steps=interval_steps, friction=friction,
                                seed=seed + run.index)
    for k, frame in enumerate(frames):
        frame.info["origin"] = f"{tag}:{frame.info['temperature']:g}K:{k}"
    return frames
