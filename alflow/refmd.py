"""A held-out test set from short MD with the reference method itself.

Instead of randomly perturbed copies of the initial structures, the test set
can be made of decorrelated frames of NVT MD run with the reference (CP2K's
own MD, or ASE Langevin MD with the reference's ASE calculator) at the
sampling temperatures.  The frames come back *unlabelled*: the ``label`` rule
then computes their labels with singlepoints exactly like every other
structure, so test and training labels use the same settings.

:func:`alflow.md.md_plan` spreads the frames over temperatures and initial
structures; :func:`reference_md_frames` runs the plan (one MD per planned run)
and reuses a finished run's frames when a killed job is rerun.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import ase.io
import numpy as np
from ase import Atoms

from .cp2k import (
    END_MARKER,
    OUTPUT_NAME,
    Cp2kError,
    Cp2kTemplate,
    launch_command,
    render_input,
    run_input,
    singlepoint_tree,
)
from .io import atomic_path, read_frames, write_frames
from .labelling import structure_hash
from .md import MdRun, ase_md_frames, bare_frame, check_md_settings, md_plan
from .reference import AseReference, Cp2kReference, make_reference

log = logging.getLogger(__name__)

__all__ = [
    "cp2k_md_frames",
    "md_input",
    "reference_md_frames",
]

#: CP2K project name of the MD runs: the trajectory is ``md-pos-1.xyz``.
PROJECT = "md"
#: Time constant (fs) of CP2K's CSVR thermostat: short, to equilibrate fast
#: (CSVR samples the canonical ensemble for any time constant).
CSVR_TIMECON_FS = 10.0
_STEP = re.compile(r"^\s*i\s*=\s*(\d+)\s*,", re.MULTILINE)
FRAMES_NAME = "frames.extxyz"
HASH_NAME = "frames.sha256"


# --------------------------------------------------------------------------
# CP2K
# --------------------------------------------------------------------------


def md_input(
    template: Cp2kTemplate,
    atoms: Atoms,
    temperature: float,
    *,
    steps: int,
    timestep_fs: float,
    interval_steps: int,
    seed: int,
) -> str:
    """CP2K input text for NVT MD (CSVR thermostat) of ``atoms``.

    Built like a singlepoint input (:func:`alflow.cp2k.make_input`: cell,
    coordinates and kinds injected, everything else of the template kept,
    no stress), then ``GLOBAL/RUN_TYPE MD``, ``GLOBAL/SEED``, a new
    ``MOTION/MD`` section, the position trajectory (xyz) every
    ``interval_steps`` steps, forces in the main output at the same steps
    (so that :func:`alflow.cp2k.run_input` can check the output) and no
    restart files.
    """
    tree = singlepoint_tree(template.tree, atoms, PROJECT, stress=False)
    glob = tree["+global"]
    glob["run_type"] = "md"
    glob["seed"] = int(seed)
    force_eval = tree["+force_eval"][0]
    force_eval["+print"]["+forces"]["+each"] = {"md": int(interval_steps)}
    motion = tree.setdefault("+motion", {})
    motion["+md"] = {
        "ensemble": "nvt",
        "steps": int(steps),
        "timestep": float(timestep_fs),
        "temperature": float(temperature),
        "+thermostat": {"type": "csvr", "+csvr": {"timecon": CSVR_TIMECON_FS}},
    }
    prints = motion.get("+print")
    printing = dict((prints[0] if prints else {}) if isinstance(prints, list) else (prints or {}))
    printing["+trajectory"] = {"_": "on", "format": "xyz", "+each": {"md": int(interval_steps)}}
    printing["+restart"] = {"_": "off"}
    printing["+restart_history"] = {"_": "off"}
    motion["+print"] = [printing, *prints[1:]] if isinstance(prints, list) else printing
    return render_input(tree, template.xmlspec)


def cp2k_md_frames(
    atoms: Atoms,
    template: Cp2kTemplate,
    temperature: float,
    n_frames: int,
    *,
    timestep_fs: float,
    equilibration_steps: int,
    interval_steps: int,
    seed: int,
    workdir: str | os.PathLike[str],
    **run_kwargs: Any,
) -> list[Atoms]:
    """``n_frames`` frames of CP2K NVT MD of ``atoms`` with the template's method.

    ``run_kwargs`` are :func:`alflow.cp2k.run_input`'s launch options
    (``command``, ``mpi``, ``tasks``, ``cpus_per_task``, ``timeout``).

    One CP2K process (:func:`md_input`, run by :func:`alflow.cp2k.run_input`
    in ``workdir``) runs ``equilibration_steps + n_frames * interval_steps``
    steps; the frames after the equilibration are read from the trajectory.
    CP2K draws the start velocities (scaled to ``temperature``) and the
    thermostat noise from ``GLOBAL/SEED``.  SCF steps that did not converge
    are logged, not fatal, when the run completed (the frames are labelled
    separately anyway).  Raises :class:`Cp2kError` naming ``workdir`` when
    CP2K fails or the trajectory is incomplete, :class:`RuntimeError` when
    ``command`` cannot be started.  Frames carry numbers, positions, the
    start cell and pbc, and ``info`` ``{"origin": "md:<T>K:<step>",
    "temperature": T}``.
    """
    check_md_settings(n_frames, equilibration_steps, interval_steps, timestep_fs)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    trajectory = workdir / f"{PROJECT}-pos-1.xyz"
    for stale in workdir.glob(f"{PROJECT}-*"):
        stale.unlink()  # CP2K appends to existing trajectory/energy files
    steps = equilibration_steps + n_frames * interval_steps
    text = md_input(template, atoms, temperature, steps=steps, timestep_fs=timestep_fs,
                    interval_steps=interval_steps, seed=seed)
    where = f"CP2K MD at {temperature:g} K in {workdir}"
    try:
        run_input(text, len(atoms), workdir, **run_kwargs)
    except Cp2kError as exc:
        output = workdir / OUTPUT_NAME
        if exc.kind != "scf_not_converged" or END_MARKER not in output.read_text(errors="replace"):
            raise Cp2kError(exc.kind, f"{where}: {exc.message}") from exc
        log.warning("%s: SCF not converged in some MD steps (run completed; frames kept): %s",
                    where, exc.message)
    except OSError as exc:
        argv = " ".join(launch_command(run_kwargs.get("command", "cp2k"),
                                       run_kwargs.get("mpi", "mpirun"), run_kwargs.get("tasks", 1),
                                       run_kwargs.get("cpus_per_task", 1)))
        raise RuntimeError(f"{where}: cannot run {argv!r}: {exc}") from exc
    return _read_trajectory(trajectory, atoms, temperature, equilibration_steps, n_frames, where)


def _read_trajectory(path: Path, atoms: Atoms, temperature: float, equilibration_steps: int,
                     n_frames: int, where: str) -> list[Atoms]:
    """The first ``n_frames`` frames after the equilibration of a CP2K xyz trajectory."""
    try:
        text = path.read_text()
        traj = ase.io.read(path, index=":", format="xyz")
    except Exception as exc:  # missing or malformed
        raise Cp2kError("parse_error", f"{where}: cannot read the trajectory {path.name}: {exc}") from exc
    steps = [int(s) for s in _STEP.findall(text)]
    if len(steps) != len(traj):
        raise Cp2kError("parse_error", f"{where}: {path.name} has {len(traj)} frames but "
                        f"{len(steps)} 'i = <step>' comment lines")
    kept = [(step, frame) for step, frame in zip(steps, traj) if step > equilibration_steps]
    if len(kept) < n_frames:
        raise Cp2kError("parse_error", f"{where}: {path.name} has {len(kept)} frames after step "
                        f"{equilibration_steps}, expected {n_frames}")
    frames = []
    for step, frame in kept[:n_frames]:
        if len(frame) != len(atoms) or not np.array_equal(frame.numbers, atoms.numbers):
            raise Cp2kError("parse_error", f"{where}: frame of step {step} in {path.name} has other atoms")
        if not np.all(np.isfinite(frame.positions)):
            raise Cp2kError("parse_error", f"{where}: non-finite positions at step {step}")
        frames.append(bare_frame(atoms.numbers, frame.positions, atoms, temperature,
                             f"md:{temperature:g}K:{step}"))
    return frames


# --------------------------------------------------------------------------
# The test set
# --------------------------------------------------------------------------


def reference_md_frames(
    reference_cfg: Mapping[str, Any],
    structures: Sequence[Atoms],
    temperatures: Sequence[float],
    n_frames: int,
    *,
    timestep_fs: float,
    equilibration_steps: int,
    interval_steps: int,
    friction: float,
    seed: int,
    workdir: str | os.PathLike[str],
    mpi: str | None = None,
    tasks: int | None = None,
    cpus_per_task: int | None = None,
) -> list[Atoms]:
    """``n_frames`` unlabelled frames of MD with the reference of ``reference_cfg``.

    ``reference_cfg`` is the ``reference`` config sub-tree (``kind`` cp2k:
    :func:`cp2k_md_frames`; ase: :func:`alflow.md.ase_md_frames` with a fresh
    calculator per run, ``friction`` used only there); ``mpi``/``tasks``/
    ``cpus_per_task`` as in :func:`alflow.reference.make_reference`.  Runs
    follow :func:`alflow.md.md_plan`; run ``r`` uses seed ``seed + r`` and works in
    ``workdir/run_{r:03d}``, where its frames are kept so that a rerun
    reuses finished runs with the same settings.  Frame ``k`` of the result
    has ``info["origin"] = "test_md:<T>K:<k>"``.
    """
    reference = make_reference(reference_cfg, mpi=mpi, tasks=tasks, cpus_per_task=cpus_per_task)
    log.info("reference MD with %s", reference.describe())
    md = {"timestep_fs": float(timestep_fs), "equilibration_steps": int(equilibration_steps),
          "interval_steps": int(interval_steps)}
    if isinstance(reference, AseReference):
        md["friction"] = float(friction)
    frames: list[Atoms] = []
    plan = md_plan(n_frames, temperatures, len(structures))
    for run in plan:
        start = time.perf_counter()
        rundir = Path(workdir) / f"run_{run.index:03d}"
        atoms = structures[run.structure]
        key = _run_hash(atoms, reference, run, md, seed + run.index)
        run_frames = _cached_frames(rundir, key, run.n_frames)
        reused = run_frames is not None
        if run_frames is None:
            (rundir / HASH_NAME).unlink(missing_ok=True)
            if isinstance(reference, Cp2kReference):
                run_frames = cp2k_md_frames(atoms, reference.template, run.temperature, run.n_frames,
                                            **md, seed=seed + run.index, workdir=rundir,
                                            **reference.run_kwargs)
            else:
                rundir.mkdir(parents=True, exist_ok=True)
                run_frames = ase_md_frames(atoms, reference.calculator(rundir), run.temperature,
                                           run.n_frames, **md, seed=seed + run.index)
            write_frames(rundir / FRAMES_NAME, run_frames)
            with atomic_path(rundir / HASH_NAME) as tmp:
                tmp.write_text(key + "\n")
        frames.extend(run_frames)
        log.info("MD run %d/%d (T=%g K, structure %d): %d frames, %d steps, %.1f s%s", run.index + 1,
                 len(plan), run.temperature, run.structure, run.n_frames,
                 equilibration_steps + run.n_frames * interval_steps, time.perf_counter() - start,
                 " (reused)" if reused else "")
    for k, frame in enumerate(frames):
        frame.info["origin"] = f"test_md:{frame.info['temperature']:g}K:{k}"
    return frames


def _run_hash(atoms: Atoms, reference: Any, run: MdRun, md: Mapping[str, Any], seed: int) -> str:
    settings = {"temperature": run.temperature, "n_frames": run.n_frames, "seed": seed, **md}
    digest = hashlib.sha256(structure_hash(atoms, reference).encode())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def _cached_frames(rundir: Path, key: str, n_frames: int) -> list[Atoms] | None:
    try:
        if (rundir / HASH_NAME).read_text().strip() != key:
            return None
        frames = read_frames(rundir / FRAMES_NAME)
    except Exception:  # missing, stale or unreadable: rerun
        return None
    return frames if len(frames) == n_frames else None
