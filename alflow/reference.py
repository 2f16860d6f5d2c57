"""The reference method behind the ``label`` rule: CP2K or any ASE calculator.

:func:`make_reference` builds a :class:`Reference` from the ``reference``
config sub-tree; :func:`label_chunk` labels one chunk of structures, keeps
failures aside (never stopping the chunk) and reuses finished per-structure
results when a killed job is rerun.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from abc import ABC, abstractmethod
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import ase.io
import numpy as np
from ase import Atoms

from . import ENERGY_KEY, FAILURE_KEY, FORCES_KEY, RETRY_KEY, STRESS_KEY
from .config import seconds
from .cp2k import (ATOM_BOX, Cp2kError, Cp2kTemplate, launch_command, load_template, run_cp2k,
                   safer_scf)
from .cp2k import isolated_atom_energy as cp2k_isolated_atom_energy
from .io import atomic_path, read_frames, write_frames

log = logging.getLogger(__name__)

__all__ = [
    "AseReference",
    "Cp2kReference",
    "LabelFailure",
    "Reference",
    "label_chunk",
    "isolated_atom_cached",
    "label_cached",
    "make_reference",
]

#: Set to 1 to let a finished label chunk be relabelled with other structures.
RELABEL_ENV = "ALFLOW_RELABEL"
FINISHED_NAME = "finished.json"

#: Longest failure message stored in ``info[FAILURE_KEY]``.
MAX_FAILURE_CHARS = 300
RESULT_NAME = "result.extxyz"
HASH_NAME = "result.sha256"


class LabelFailure(RuntimeError):
    """A structure the reference could not label.

    ``kind`` is short and machine-readable (CP2K: the :class:`Cp2kError` kind;
    ASE: ``calculator_error`` or ``non_finite``); ``message`` is one line.
    """

    def __init__(self, kind: str, message: str) -> None:
        message = " ".join(str(message).split())
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


# --------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------


class Reference(ABC):
    """Energy, forces and (3D-periodic) stress of single structures."""

    def label(self, atoms: Atoms, workdir: str | os.PathLike[str]) -> Atoms:
        """A copy of ``atoms`` carrying the reference labels, without calculator.

        Sets ``info[ENERGY_KEY]`` (eV), ``arrays[FORCES_KEY]`` (eV/A) and, for
        structures periodic in all three directions when the method gives one,
        ``info[STRESS_KEY]`` (Voigt, eV/A^3, ASE sign).  Other info/arrays are
        kept.  Raises :class:`LabelFailure` when the calculation fails.
        """
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        result = self._compute(atoms, workdir)
        return _with_labels(atoms, result["energy"], result["forces"], result.get("stress"),
                            result.get("retry"))

    @abstractmethod
    def _compute(self, atoms: Atoms, workdir: Path) -> dict[str, Any]:
        """{"energy": float, "forces": (n, 3), "stress": (6,) or None}."""

    @abstractmethod
    def isolated_atom_energy(self, symbol: str, workdir: str | os.PathLike[str]) -> float:
        """Energy (eV) of one free atom of ``symbol``."""

    @property
    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Everything that determines the labels (not resources), JSON-serialisable."""

    def fingerprint(self) -> str:
        """Canonical text of :attr:`settings`, used to validate cached results."""
        return json.dumps(self.settings, sort_keys=True, default=str)


class Cp2kReference(Reference):
    """CP2K singlepoints from an input template (see :mod:`alflow.cp2k`)."""

    def __init__(
        self,
        template: Cp2kTemplate,
        *,
        command: str = "cp2k",
        mpi: str | None = "mpirun",
        tasks: int = 1,
        cpus_per_task: int = 1,
        timeout: float | None = None,
        scf_retry: bool = True,
    ) -> None:
        self.template = template
        self.command = command
        self.scf_retry = scf_retry
        self.run_kwargs: dict[str, Any] = {
            "command": command,
            "mpi": mpi,
            "tasks": int(tasks),
            "cpus_per_task": int(cpus_per_task),
            "timeout": timeout,
        }

    @property
    def settings(self) -> dict[str, Any]:
        """The level of theory: the template's content. Not the binary, the
        launcher or the time limit: a label is the same wherever it ran."""
        return {"kind": "cp2k", "template": self.template.fingerprint}

    def describe(self) -> str:
        kw = self.run_kwargs
        argv = launch_command(kw["command"], kw["mpi"], kw["tasks"])
        return (f"CP2K template {self.template.path}, run as: {' '.join(argv)} "
                f"with OMP_NUM_THREADS={kw['cpus_per_task']}")

    def _compute(self, atoms: Atoms, workdir: Path) -> dict[str, Any]:
        try:
            return run_cp2k(atoms, self.template, workdir, **self.run_kwargs)
        except Cp2kError as exc:
            if exc.kind != "scf_not_converged" or not self.scf_retry:
                raise LabelFailure(exc.kind, exc.message) from exc
            first = exc
        # Once more with safer SCF settings, in its own directory (the first
        # run's output stays next to it); the label says it was retried.
        safer, changes = safer_scf(self.template)
        try:
            result = run_cp2k(atoms, safer, workdir / "scf_retry", **self.run_kwargs)
        except Cp2kError as exc:
            raise LabelFailure(exc.kind, f"{first.message}; retried with {changes}: "
                                         f"{exc.message}") from exc
        return {**result, "retry": f"scf retried ({changes})"}

    def isolated_atom_energy(self, symbol: str, workdir: str | os.PathLike[str]) -> float:
        try:
            return cp2k_isolated_atom_energy(symbol, self.template, workdir, **self.run_kwargs)
        except Cp2kError as exc:
            raise LabelFailure(exc.kind, f"isolated {symbol} atom: {exc.message}") from exc


class AseReference(Reference):
    """Any ASE calculator, given as a class or a dotted import path."""

    def __init__(self, calculator: str | type, kwargs: Mapping[str, Any] | None = None) -> None:
        if isinstance(calculator, str):
            from .config import import_object

            self.calculator_path = calculator
            self.calculator_class = import_object(calculator)
        else:
            self.calculator_path = f"{calculator.__module__}.{calculator.__qualname__}"
            self.calculator_class = calculator
        self.kwargs = dict(kwargs or {})

    def describe(self) -> str:
        return f"ASE calculator {self.calculator_path}(**{self.kwargs})"

    @property
    def settings(self) -> dict[str, Any]:
        return {"kind": "ase", "calculator": self.calculator_path, "kwargs": self.kwargs}

    def _compute(self, atoms: Atoms, workdir: Path) -> dict[str, Any]:
        work = atoms.copy()
        work.calc = self._calculator(workdir)
        want_stress = bool(np.all(atoms.pbc)) and "stress" in work.calc.implemented_properties
        try:
            energy = work.get_potential_energy()
            forces = work.get_forces()
            stress = work.get_stress(voigt=True) if want_stress else None
        except Exception as exc:  # any calculator failure is a label failure
            raise LabelFailure("calculator_error", f"{type(exc).__name__}: {exc}") from exc
        return {"energy": energy, "forces": forces, "stress": stress}

    def isolated_atom_energy(self, symbol: str, workdir: str | os.PathLike[str]) -> float:
        atom = Atoms(symbol, cell=[ATOM_BOX] * 3, pbc=False)
        atom.center()
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        return float(self._compute(atom, workdir)["energy"])

    def _calculator(self, workdir: Path) -> Any:
        """A fresh calculator per structure (no state carried between frames)."""
        calc = self.calculator_class(**self.kwargs)
        if "directory" not in self.kwargs and hasattr(calc, "directory"):
            calc.directory = str(workdir)  # file-based calculators work in workdir
        return calc


def _with_labels(atoms: Atoms, energy: Any, forces: Any, stress: Any,
                 retry: str | None = None) -> Atoms:
    """Copy of ``atoms`` with validated labels (stress only if 3D periodic) and,
    when the label was rescued by a retry, ``info[RETRY_KEY]`` saying how."""
    energy = float(energy)
    forces = np.array(forces, dtype=float)
    if not np.isfinite(energy) or forces.shape != (len(atoms), 3) or not np.all(np.isfinite(forces)):
        raise LabelFailure("non_finite", f"energy {energy}, forces of shape {forces.shape} with non-finite values")
    labelled = atoms.copy()
    labelled.calc = None
    labelled.info[ENERGY_KEY] = energy
    labelled.arrays[FORCES_KEY] = forces
    labelled.info.pop(STRESS_KEY, None)
    labelled.info.pop(FAILURE_KEY, None)
    labelled.info.pop(RETRY_KEY, None)
    if retry:
        labelled.info[RETRY_KEY] = retry
    if stress is not None and np.all(atoms.pbc):
        stress = np.array(stress, dtype=float).reshape(6)
        if not np.all(np.isfinite(stress)):
            raise LabelFailure("non_finite", "non-finite stress")
        labelled.info[STRESS_KEY] = stress
    return labelled


def make_reference(
    ref_cfg: Mapping[str, Any],
    *,
    mpi: str | None = None,
    tasks: int | None = None,
    cpus_per_task: int | None = None,
) -> Reference:
    """The reference of the ``reference`` config sub-tree.

    ``mpi``/``tasks``/``cpus_per_task`` (e.g. from Snakemake resources) win
    over ``reference.cp2k`` values when not None; ``mpi=""`` means no launcher.
    """
    kind = ref_cfg.get("kind", "cp2k")
    if kind == "cp2k":
        cfg = ref_cfg.get("cp2k", {})
        limit = ref_cfg.get("time_limit")
        return Cp2kReference(
            load_template(cfg["template"]),
            command=cfg.get("command", "cp2k"),
            mpi=_first_set(mpi, cfg.get("mpi"), "mpirun"),
            tasks=_first_set(tasks, cfg.get("tasks"), 1),
            cpus_per_task=_first_set(cpus_per_task, cfg.get("cpus_per_task"), 1),
            timeout=None if limit is None else seconds(limit),
            scf_retry=cfg.get("scf_retry", True),
        )
    if kind == "ase":
        cfg = ref_cfg.get("ase", {})
        return AseReference(cfg.get("calculator", "ase.calculators.emt.EMT"), cfg.get("kwargs", {}))
    raise ValueError(f"reference.kind: unknown reference {kind!r} (expected cp2k or ase)")


def _first_set(*values: Any) -> Any:
    return next(v for v in values if v is not None)


# --------------------------------------------------------------------------
# Chunks, with per-structure caching
# --------------------------------------------------------------------------


def structure_hash(atoms: Atoms, reference: Reference) -> str:
    """SHA-256 of the structure (:func:`geometry_key`) and the reference's
    level of theory: the key of a label in the caches."""
    return hashlib.sha256(f"{geometry_key(atoms)}:{reference.fingerprint()}".encode()).hexdigest()


def cache_path(cache: str | os.PathLike[str], key: str) -> Path:
    """Where the campaign-wide label cache keeps the result of ``key``."""
    return Path(cache) / key[:2] / f"{key}.extxyz"


def geometry_key(atoms: Atoms) -> str:
    """SHA-256 of numbers, positions and cell (to 1e-5 Å, what survives an
    extxyz round trip) and pbc: the same structure, whatever the reference."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(atoms.numbers, dtype=np.int64).tobytes())
    for array in (atoms.positions, atoms.cell.array):
        digest.update(np.ascontiguousarray(np.round(array, 5) + 0.0, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(atoms.pbc, dtype=np.bool_).tobytes())
    return digest.hexdigest()


def unpaid_structures(frames: list[Atoms], label_dir: str | os.PathLike[str]) -> int:
    """How many of ``frames`` a stage whose labels already finished
    (``label_dir/work_*/finished.json``) has not labelled: the reference
    calculations a new selection for a finished iteration would cost. 0 when
    no chunk of the stage has finished (a first run)."""
    done: set[str] = set()
    finished = False
    for record in Path(label_dir).glob(f"work_*/{FINISHED_NAME}"):
        try:
            done.update(json.loads(record.read_text()).get("geometries", []))
            finished = True
        except (OSError, ValueError):
            continue
    return sum(geometry_key(a) not in done for a in frames) if finished else 0


def relabel_allowed() -> bool:
    return os.environ.get(RELABEL_ENV) == "1"


def relabel_refused(what: str, n_new: int) -> RelabelRefused:
    return RelabelRefused(
        f"{what} was finished with other structures, and labelling these would cost "
        f"{n_new} new reference calculation(s) for a stage that is already done. The level of "
        "theory (the CP2K template), or something that decides which frames a finished "
        "iteration selects (selection, sampling, seed, a model), changed since it finished, "
        "so Snakemake reruns it. Finished labels are never replaced silently: revert the "
        "change and run again (the finished selections are remade as they were, at no "
        "reference cost), or start the run with `--rerun-triggers mtime input` so that changed "
        "settings apply only to iterations not yet run. To pay for the new labels, run again "
        f"with {RELABEL_ENV}=1 in the environment.")


def label_cached(reference: Reference, atoms: Atoms, workdir: str | os.PathLike[str],
                 cache: str | os.PathLike[str] | None = None) -> Atoms:
    """:meth:`Reference.label` with result caches.

    A finished result is stored as ``result.extxyz`` plus ``result.sha256``
    (:func:`structure_hash`) in ``workdir`` and, when ``cache`` is given, in
    the campaign-wide cache under its key (:func:`cache_path`), which any
    chunk of any stage finds again: a structure relabelled by a rerun, a
    changed ``chunk_size`` or another profile is never computed twice.
    Failures are not cached (a rerun tries them again).
    """
    workdir = Path(workdir)
    key = structure_hash(atoms, reference)
    cached = _read_cached(workdir, key)
    if cached is None and cache is not None:
        cached = _read_frame(cache_path(cache, key))
    if cached is not None:
        return _with_labels(atoms, cached.info[ENERGY_KEY], cached.arrays[FORCES_KEY],
                            cached.info.get(STRESS_KEY), cached.info.get(RETRY_KEY))
    (workdir / HASH_NAME).unlink(missing_ok=True)
    labelled = reference.label(atoms, workdir)
    write_frames(workdir / RESULT_NAME, [labelled])
    with atomic_path(workdir / HASH_NAME) as tmp:
        tmp.write_text(key + "\n")
    if cache is not None:
        cache_path(cache, key).parent.mkdir(parents=True, exist_ok=True)
        write_frames(cache_path(cache, key), [labelled])
    return labelled


def isolated_atom_cached(reference: Reference, symbol: str, workdir: str | os.PathLike[str],
                         cache: str | os.PathLike[str]) -> float:
    """:meth:`Reference.isolated_atom_energy`, kept in the label cache under
    the element and the level of theory."""
    key = hashlib.sha256(f"isolated_atom:{symbol}:{reference.fingerprint()}".encode()).hexdigest()
    path = Path(cache) / key[:2] / f"{key}.json"
    try:
        return float(json.loads(path.read_text())["energy"])
    except (OSError, ValueError, KeyError):
        pass
    energy = reference.isolated_atom_energy(symbol, workdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"element": symbol, "energy": energy}))
    return energy


def _read_cached(workdir: Path, key: str) -> Atoms | None:
    try:
        if (workdir / HASH_NAME).read_text().strip() != key:
            return None
    except OSError:
        return None
    return _read_frame(workdir / RESULT_NAME)


def _read_frame(path: Path) -> Atoms | None:
    """A cached labelled frame, or None when missing, unreadable or unlabelled."""
    try:
        frame = ase.io.read(path, format="extxyz")
    except Exception:  # missing, stale or unreadable: recompute
        return None
    if ENERGY_KEY not in frame.info or FORCES_KEY not in frame.arrays:
        return None
    return frame


def label_chunk(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    failed_path: str | os.PathLike[str],
    reference: Reference,
    workdir: str | os.PathLike[str],
    cache: str | os.PathLike[str] | None = None,
    allow_relabel: bool | None = None,
) -> dict[str, Any]:
    """Label every frame of ``in_path`` (extxyz, may be empty).

    Frame ``k`` is computed in ``workdir/struct_{k:04d}``.  Labelled frames
    go to ``out_path``, failed ones (input frame plus ``info[FAILURE_KEY] =
    "<kind>: <message>"``) to ``failed_path``; both are written atomically,
    as empty files when there is nothing.  When every structure (at least
    two) failed with the same error, the chunk itself fails with
    :class:`SystematicFailure` naming that error: a missing basis set or a
    broken launcher is not a property of the structures.  Returns ``{"n_input",
    "n_labelled", "n_failed", "failures": {kind: count}}``.

    A finished chunk records its structures (``workdir/finished.json``). When
    it is run again with other structures that are not in ``cache`` (the
    selection of a finished iteration changed), it refuses with
    :class:`RelabelRefused` instead of paying for them, unless
    ``allow_relabel`` (default: the environment variable ``ALFLOW_RELABEL=1``).
    """
    frames = read_frames(in_path)
    keys = [structure_hash(a, reference) for a in frames]
    if allow_relabel is None:
        allow_relabel = relabel_allowed()
    if not allow_relabel:
        _check_not_finished_with_others(Path(workdir) / FINISHED_NAME, keys, cache, out_path)
    labelled: list[Atoms] = []
    failed: list[Atoms] = []
    failures: Counter[str] = Counter()
    for k, atoms in enumerate(frames):
        start = time.perf_counter()
        try:
            labelled.append(label_cached(reference, atoms, Path(workdir) / f"struct_{k:04d}",
                                         cache))
            log.info("structure %d/%d labelled in %.1f s", k + 1, len(frames),
                     time.perf_counter() - start)
        except LabelFailure as exc:
            failed.append(_failed_frame(atoms, exc))
            failures[exc.kind] += 1
            log.warning("structure %d/%d FAILED (%s): %s", k + 1, len(frames), exc.kind,
                        exc.message)
    systematic = None if labelled else _systematic_failure(failed)
    if systematic:
        raise SystematicFailure(
            f"all {len(frames)} structures of {in_path} failed with the same error, so the "
            f"reference itself is the problem, not the structures: {systematic} (CP2K input "
            f"and output of each: {Path(workdir) / 'struct_*'})")
    write_frames(out_path, labelled)
    write_frames(failed_path, failed)
    with atomic_path(Path(workdir) / FINISHED_NAME) as tmp:
        tmp.write_text(json.dumps({"output": str(out_path), "structures": keys,
                                   "geometries": [geometry_key(a) for a in frames]}))
    return {
        "n_input": len(frames),
        "n_labelled": len(labelled),
        "n_failed": len(failed),
        "failures": dict(failures),
    }


class SystematicFailure(RuntimeError):
    """Every structure of a chunk failed for the same reason: the chunk fails."""


class RelabelRefused(RuntimeError):
    """A finished chunk would be relabelled with structures that cost new
    reference calculations."""


def _check_not_finished_with_others(record: Path, keys: list[str],
                                    cache: str | os.PathLike[str] | None, out_path) -> None:
    try:
        done = set(json.loads(record.read_text())["structures"])
    except (OSError, ValueError, KeyError):
        return  # never finished: a first run, or one that was killed
    new = [k for k in keys if k not in done
           and (cache is None or not cache_path(cache, k).exists())]
    if not new:
        return
    raise relabel_refused(str(out_path), len(new))


def _systematic_failure(failed: list[Atoms], minimum: int = 2) -> str | None:
    """The failure shared by every structure (at least ``minimum``), numbers
    ignored when comparing; None when they differ or some were labelled."""
    reasons = {re.sub(r"\d+(\.\d+)?", "#", str(a.info.get(FAILURE_KEY))) for a in failed}
    return failed[0].info[FAILURE_KEY] if len(failed) >= minimum and len(reasons) == 1 else None


def _failed_frame(atoms: Atoms, failure: LabelFailure) -> Atoms:
    frame = atoms.copy()
    frame.calc = None
    # extxyz stores it as a quoted string: no double quotes or backslashes
    text = f"{failure.kind}: {failure.message}".replace('"', "'").replace("\\", "/")
    if len(text) > MAX_FAILURE_CHARS:
        text = text[: MAX_FAILURE_CHARS - 3] + "..."
    frame.info[FAILURE_KEY] = text
    return frame
