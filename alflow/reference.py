"""The reference method behind the ``label`` rule: CP2K or any ASE calculator.

:func:`make_reference` builds a :class:`Reference` from the ``reference``
config sub-tree; :meth:`Reference.label` labels one structure, raising
:class:`LabelFailure` when it cannot.  Labelling whole chunks, with caches and
the guard against relabelling finished stages, is :mod:`alflow.labelling`.
"""

from __future__ import annotations

import json
import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from ase import Atoms

from . import ENERGY_KEY, FAILURE_KEY, FORCES_KEY, RETRY_KEY, STRESS_KEY
from .config import seconds
from .cp2k import (ATOM_BOX, OUTPUT_NAME, Cp2kError, Cp2kTemplate, launch_command, load_template, run_cp2k,
                   safer_scf, stop_all_runs)
from .cp2k import isolated_atom_energy as cp2k_isolated_atom_energy

log = logging.getLogger(__name__)

__all__ = [
    "AseReference",
    "Cp2kReference",
    "LabelFailure",
    "Reference",
    "labelled_copy",
    "make_reference",
]


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

    #: Where :meth:`label` keeps the converged wavefunction of a structure
    #: (CP2K with ``wfn_guess``), for the next similar structure to start from.
    GUESS_NAME = "wfn.guess"
    #: How many structures :func:`alflow.labelling.label_chunk` labels at once.
    concurrent = 1

    def label(self, atoms: Atoms, workdir: str | os.PathLike[str],
              guess: str | os.PathLike[str] | None = None) -> Atoms:
        """A copy of ``atoms`` carrying the reference labels, without calculator.

        Sets ``info[ENERGY_KEY]`` (eV), ``arrays[FORCES_KEY]`` (eV/A) and, for
        structures periodic in all three directions when the method gives one,
        ``info[STRESS_KEY]`` (Voigt, eV/A^3, ASE sign).  Other info/arrays are
        kept.  Raises :class:`LabelFailure` when the calculation fails.
        ``guess``: the :attr:`GUESS_NAME` file of an earlier structure with
        the same atoms in the same order, to start the SCF from (CP2K only;
        the result is the same, to the SCF's tolerance).
        """
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        result = self._compute(atoms, workdir, guess) if guess else self._compute(atoms, workdir)
        return labelled_copy(atoms, result["energy"], result["forces"], result.get("stress"),
                            result.get("retry"))

    @abstractmethod
    def _compute(self, atoms: Atoms, workdir: Path) -> dict[str, Any]:
        """{"energy": float, "forces": (n, 3), "stress": (6,) or None}."""

    @abstractmethod
    def isolated_atom_energy(self, symbol: str, workdir: str | os.PathLike[str]) -> float:
        """Energy (eV) of one free atom of ``symbol``."""

    def stop(self) -> None:
        """Stop the calculations running in other threads and start no new
        one (the job is being interrupted)."""

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
        wfn_guess: bool = True,
        concurrent: int = 1,
    ) -> None:
        self.template = template
        self.command = command
        self.scf_retry = scf_retry
        self.wfn_guess = wfn_guess
        self.concurrent = int(concurrent)
        self.run_kwargs: dict[str, Any] = {
            "command": command,
            "mpi": mpi,
            "tasks": int(tasks),
            "cpus_per_task": int(cpus_per_task),
            "timeout": timeout,
            "concurrent": int(concurrent),
        }

    @property
    def settings(self) -> dict[str, Any]:
        """The level of theory: the template's content. Not the binary, the
        launcher or the time limit: a label is the same wherever it ran."""
        return {"kind": "cp2k", "template": self.template.fingerprint}

    def describe(self) -> str:
        kw = self.run_kwargs
        argv = launch_command(kw["command"], kw["mpi"], kw["tasks"], kw["cpus_per_task"],
                              kw["concurrent"])
        at_once = f", {kw['concurrent']} structures at once" if kw["concurrent"] > 1 else ""
        return (f"CP2K template {self.template.path}, run as: {' '.join(argv)} "
                f"with OMP_NUM_THREADS={kw['cpus_per_task']}{at_once}")

    def _compute(self, atoms: Atoms, workdir: Path,
                 guess: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        keep = workdir / self.GUESS_NAME if self.wfn_guess else None
        if keep is not None:
            keep.unlink(missing_ok=True)
        if guess is not None and self.wfn_guess:
            try:
                return run_cp2k(atoms, self.template, workdir, guess=guess, keep_wfn=keep,
                                **self.run_kwargs)
            except Cp2kError as exc:
                if keep is not None:
                    keep.unlink(missing_ok=True)
                if exc.kind == "timeout":  # the time is spent: no second run
                    raise LabelFailure(exc.kind, exc.message) from exc
                # rescued by its own singlepoint, exactly as without a guess
                # (the failed run's output stays as from_guess.out)
                output = workdir / OUTPUT_NAME
                if output.exists():
                    os.replace(output, workdir / "from_guess.out")
                log.warning("%s: the SCF from the previous structure's wavefunction failed "
                            "(%s: %s); computed on its own", workdir.name, exc.kind, exc.message)
        try:
            return run_cp2k(atoms, self.template, workdir, keep_wfn=keep, **self.run_kwargs)
        except Cp2kError as exc:
            if keep is not None:
                keep.unlink(missing_ok=True)
            if exc.kind != "scf_not_converged" or not self.scf_retry:
                raise LabelFailure(exc.kind, exc.message) from exc
            first = exc
        # Once more with safer SCF settings, in its own directory (the first
        # run's output stays next to it); the label says it was retried.
        safer, changes = safer_scf(self.template)
        try:
            result = run_cp2k(atoms, safer, workdir / "scf_retry", keep_wfn=keep,
                              **self.run_kwargs)
        except Cp2kError as exc:
            if keep is not None:
                keep.unlink(missing_ok=True)
            raise LabelFailure(exc.kind, f"{first.message}; retried with {changes}: "
                                         f"{exc.message}") from exc
        return {**result, "retry": f"scf retried ({changes})"}

    def stop(self) -> None:
        stop_all_runs()

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
        work.calc = self.calculator(workdir)
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

    def calculator(self, workdir: str | os.PathLike[str]) -> Any:
        """A fresh calculator (one per structure or MD run: no state carried
        over); file-based calculators work in ``workdir`` unless the kwargs
        name a ``directory``."""
        calc = self.calculator_class(**self.kwargs)
        if "directory" not in self.kwargs and hasattr(calc, "directory"):
            calc.directory = str(workdir)  # file-based calculators work in workdir
        return calc


def labelled_copy(atoms: Atoms, energy: Any, forces: Any, stress: Any,
                  retry: str | None = None) -> Atoms:
    """Copy of ``atoms`` with validated labels (stress only if 3D periodic) and,
    when the label was rescued by a retry, ``info[RETRY_KEY]`` saying how;
    :class:`LabelFailure` ``non_finite`` for non-finite or misshapen labels."""
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
    concurrent: int = 1,
) -> Reference:
    """The reference of the ``reference`` config sub-tree.

    ``mpi``/``tasks``/``cpus_per_task`` (e.g. from Snakemake resources) win
    over ``reference.cp2k`` values when not None; ``mpi=""`` means no launcher.
    ``concurrent``: CP2K runs a label job starts side by side, each with
    ``tasks`` ranks (an ASE reference labels one structure at a time).
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
            wfn_guess=cfg.get("wfn_guess", True),
            concurrent=concurrent,
        )
    if kind == "ase":
        cfg = ref_cfg.get("ase", {})
        return AseReference(cfg.get("calculator", "ase.calculators.emt.EMT"), cfg.get("kwargs", {}))
    raise ValueError(f"reference.kind: unknown reference {kind!r} (expected cp2k or ase)")


def _first_set(*values: Any) -> Any:
    return next(v for v in values if v is not None)
