"""Isolated-atom energies with a CP2K template: one spin-polarised atom in a
large periodic box, in its ground-state spin multiplicity."""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

from ase import Atoms
from ase.data import atomic_numbers, ground_state_magnetic_moments

from .checks import BASIS_METHODS
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
    loop and an atomic guess (see :func:`atom_scf`), because diagonalisation
    with density mixing does not converge (it oscillates between the
    degenerate orbitals of an open shell) and smearing would add an entropy
    term.  Other settings (method, basis, cutoffs, XC, EPS_DEFAULT, EPS_SCF)
    are kept.  ``run_kwargs`` are passed to :func:`run_input`.
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
    dft["+scf"] = atom_scf(dft.get("+scf", {}), _has_kinetic_matrix(tree))
    return tree


#: Inner OT steps per outer SCF iteration, and outer iterations, for a free
#: atom with a basis-set method (GPW, GAPW, ...).
ATOM_MAX_SCF = 20
ATOM_OUTER_MAX_SCF = 20


def _has_kinetic_matrix(tree: Mapping[str, Any]) -> bool:
    """Whether the QS method has a kinetic-energy matrix (the basis-set
    methods; not xTB, DFTB or the NDDO methods), which OT's FULL_KINETIC
    preconditioner needs."""
    qs = tree["+force_eval"][0].get("+dft", {}).get("+qs", {})
    return str(qs.get("method", "gpw")).lower() in BASIS_METHODS


def atom_scf(scf: Mapping[str, Any], kinetic: bool = True) -> dict[str, Any]:
    """SCF settings for a free atom: OT + outer loop, no smearing/mixing.

    The template's EPS_SCF is kept (the outer loop's, default 1e-6).  With a
    basis-set method (``kinetic``) the OT settings are CP2K's defaults,
    whatever the template says: conjugate gradients, two-point line search,
    FULL_KINETIC preconditioner, 20 inner steps per outer iteration.  The
    atomic guess starts an open shell near a saddle point (for O the singly
    occupied beta p orbital near a grid axis, 4e-4 Ha above the minimum at
    300 Ry); a condensed-phase template's DIIS falls back to steepest descent
    there, and the orbital-energy preconditioners (FULL_SINGLE_INVERSE,
    FULL_SINGLE, FULL_ALL) then drift along the nearly flat orientation of
    that orbital instead of converging (PBE/DZVP-MOLOPT-SR O at 300 Ry: 359
    SCF steps with the template's DIIS/FULL_SINGLE_INVERSE, 89 with these,
    same energy to 1e-7 Ha; benchmarks/RESULTS.md).  The semi-empirical
    methods (xTB, DFTB, NDDO) have no kinetic matrix: they keep the
    template's minimizer and preconditioner (DIIS and FULL_SINGLE_INVERSE
    when it names none) and its MAX_SCF, at most 50.
    """
    dropped = ("+smear", "+mixing", "+diagonalization", "added_mos", "scf_guess", "+outer_scf", "+ot")
    new = {key: value for key, value in scf.items() if key not in dropped}
    eps_scf = float(scf.get("eps_scf", 1e-6))
    new["scf_guess"] = "atomic"
    if kinetic:
        new["max_scf"] = ATOM_MAX_SCF
        new["+ot"] = {"_": True, "minimizer": "cg", "linesearch": "2pnt", "preconditioner": "full_kinetic"}
    else:
        new["max_scf"] = min(int(scf.get("max_scf", 50)), 50)
        ot = dict(scf.get("+ot", {}))
        ot["_"] = True
        ot.setdefault("minimizer", "diis")
        ot.setdefault("preconditioner", "full_single_inverse")
        new["+ot"] = ot
    new["+outer_scf"] = {"_": True, "max_scf": ATOM_OUTER_MAX_SCF, "eps_scf": eps_scf}
    return new
