"""Isolated-atom energies with a CP2K template: one spin-polarised atom in a
large periodic box, in its ground-state spin multiplicity."""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

from ase import Atoms
from ase.data import atomic_numbers, ground_state_magnetic_moments

from .inputs import render_input, singlepoint_tree
from .runner import run_input
from .template import Cp2kTemplate

#: Edge of the cubic box for isolated-atom calculations (Angstrom).
ATOM_BOX = 12.0


def ground_state_multiplicity(symbol: str) -> int:
    """Spin multiplicity 2S+1 of the free atom's ground state.

    From ASE's tabulated ground-state magnetic moments
    (:data:`ase.data.ground_state_magnetic_moments`, in Bohr magnetons, i.e.
    the number of unpaired electrons): ``round(moment) + 1``.  This is the
    Hund's-rule value of the ground-state configuration for H to Rn, with the
    usual exceptions to the aufbau order (Cr, Cu, Nb, Mo, ..., Pt, Au); for
    Ce the table gives a doublet where the plain aufbau configuration
    (4f2 6s2) would give a triplet.  Raises :class:`ValueError` for elements
    the table has no value for.
    """
    z = atomic_numbers[symbol]
    moment = ground_state_magnetic_moments[z] if z < len(ground_state_magnetic_moments) else math.nan
    if not math.isfinite(moment):
        raise ValueError(f"no ground-state spin multiplicity known for element {symbol}")
    return int(round(moment)) + 1


def isolated_atom_energy(
    symbol: str,
    template: Cp2kTemplate,
    workdir: str | os.PathLike[str],
    *,
    box: float = ATOM_BOX,
    **run_kwargs: Any,
) -> float:
    """Energy (eV) of one free ``symbol`` atom with the template's method.

    The atom sits in a periodic cubic box of edge ``box`` Angstrom,
    spin-polarised (UKS) with the ground-state multiplicity
    (:func:`ground_state_multiplicity`) and charge 0.  The template's SCF
    algorithm is replaced by orbital transformation (OT) with an outer SCF
    loop and an atomic guess, because diagonalisation with
    density mixing does not converge (it oscillates between the degenerate
    orbitals of an open shell) and smearing would add an entropy term.  Other
    settings (method, basis, cutoffs, convergence thresholds) are kept.
    ``run_kwargs`` are passed to :func:`run_input`.
    """
    tree = isolated_atom_tree(template, symbol, box)
    text = render_input(tree, template.xmlspec)
    return float(run_input(text, 1, workdir, **run_kwargs)["energy"])


def isolated_atom_tree(template: Cp2kTemplate, symbol: str, box: float = ATOM_BOX) -> dict[str, Any]:
    """The canonical input tree of :func:`isolated_atom_energy`."""
    atoms = Atoms(symbol, positions=[[box / 2] * 3], cell=[box] * 3, pbc=True)
    tree = singlepoint_tree(template.tree, atoms, "label", stress=False)
    dft = tree["+force_eval"][0].get("+dft")
    if dft is None:
        raise ValueError(f"CP2K template {template.path}: isolated atoms need a FORCE_EVAL/DFT section (QS method)")
    dft.pop("roks", None)
    dft.pop("relax_multiplicity", None)
    dft["uks"] = True
    dft["multiplicity"] = ground_state_multiplicity(symbol)
    dft["charge"] = 0
    dft["+scf"] = _atom_scf(dft.get("+scf", {}))
    return tree


def _atom_scf(scf: Mapping[str, Any]) -> dict[str, Any]:
    """SCF settings for a free atom: OT + outer loop, no smearing/mixing."""
    dropped = ("+smear", "+mixing", "+diagonalization", "added_mos", "scf_guess", "+outer_scf")
    new = {key: value for key, value in scf.items() if key not in dropped}
    eps_scf = float(scf.get("eps_scf", 1e-6))
    new["scf_guess"] = "atomic"
    new["max_scf"] = min(int(scf.get("max_scf", 50)), 50)
    ot = dict(scf.get("+ot", {}))
    ot["_"] = True
    ot.setdefault("minimizer", "diis")
    ot.setdefault("preconditioner", "full_single_inverse")
    new["+ot"] = ot
    new["+outer_scf"] = {"_": True, "max_scf": 20, "eps_scf": eps_scf}
    return new
