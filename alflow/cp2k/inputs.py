"""CP2K input text from a template: the singlepoint of one structure
(:func:`make_input`), any canonical tree (:func:`render_input`), and a
template with safer SCF settings for a retry (:func:`safer_scf`).

:func:`singlepoint_tree` injects what belongs to one calculation (cell,
coordinates, missing ``KIND`` sections, run type, force/stress printing)
into the template's tree; everything else of the template is kept.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np
from ase import Atoms

from .template import Cp2kTemplate, SchemaGenerator, input_schema


def render_input(tree: Mapping[str, Any], xmlspec: str | None = None) -> str:
    """CP2K input text for a canonical tree (as in :attr:`Cp2kTemplate.tree`),
    written with the schema ``xmlspec`` (None: cp2k-input-tools' bundled one)."""
    generator = SchemaGenerator(input_schema(xmlspec))
    return "\n".join(generator.line_iter(_generator_order(tree))) + "\n"


def _generator_order(node: Any) -> Any:
    """Reorder a tree so that the generator writes sections in their given order.

    ``CP2KInputGenerator`` writes keywords in dictionary order but sections
    (also repeated ones) in reverse, as it pops them from a stack.
    """
    if isinstance(node, list):  # a repeated section
        return [_generator_order(item) for item in reversed(node)]
    if not isinstance(node, dict):
        return node
    keywords = {k: v for k, v in node.items() if not k.startswith("+")}
    sections = {k: _generator_order(v) for k, v in reversed(node.items()) if k.startswith("+")}
    return {**keywords, **sections}


def make_input(template: Cp2kTemplate, atoms: Atoms, project: str = "label", *,
               stress: bool | None = None, guess: str | None = None,
               write_wfn: bool = False) -> str:
    """CP2K input text for an ``ENERGY_FORCE`` singlepoint on ``atoms``.

    Injects CELL, COORD, a bare ``KIND`` (``ELEMENT`` only) for each element
    without a ``KIND`` in the template, ``GLOBAL/RUN_TYPE`` and
    ``GLOBAL/PROJECT``; switches on force printing and, when ``stress`` is
    true (default: ``atoms`` periodic in all three directions), the analytical
    stress tensor and its printing.  Coordinate/cell file settings of the
    template are removed; everything else is kept. ``guess`` and
    ``write_wfn``: see :func:`wavefunction_guess`.
    """
    if stress is None:
        stress = bool(np.all(atoms.pbc))
    tree = singlepoint_tree(template.tree, atoms, project, stress)
    if guess or write_wfn:
        wavefunction_guess(tree, guess, write_wfn)
    return render_input(tree, template.xmlspec)


def wavefunction_guess(tree: dict[str, Any], guess: str | None, write_wfn: bool) -> None:
    """Start the SCF of ``tree`` from the wavefunction file ``guess``
    (``SCF_GUESS RESTART``, ``WFN_RESTART_FILE_NAME``) instead of the
    template's guess, and/or (``write_wfn``) make the run write its own
    converged wavefunction (``SCF/PRINT/RESTART ON``, ``<project>-RESTART.wfn``)
    for the next structure. Neither changes the converged result, only how
    many SCF steps it takes."""
    dft = tree["+force_eval"][0].get("+dft")
    if dft is None:
        return  # not a QS calculation: nothing to restart
    scf = dft.setdefault("+scf", {})
    if write_wfn:
        printing = scf.setdefault("+print", {})
        restart = dict(printing.get("+restart", {}))
        restart["_"] = "ON"
        restart["backup_copies"] = 0
        printing["+restart"] = restart
    if guess:
        dft["wfn_restart_file_name"] = str(guess)
        scf["scf_guess"] = "restart"


def singlepoint_tree(base: Mapping[str, Any], atoms: Atoms, project: str, stress: bool) -> dict[str, Any]:
    """A copy of the canonical tree ``base`` (a template's) set up for an
    ``ENERGY_FORCE`` singlepoint on ``atoms``, as described in
    :func:`make_input`; other run types start from it (MD, isolated atoms)."""
    tree = copy.deepcopy(dict(base))
    glob = tree.setdefault("+global", {})
    glob["run_type"] = "energy_force"
    glob["project_name"] = project
    force_eval = tree["+force_eval"][0]
    subsys = force_eval.setdefault("+subsys", {})
    subsys["+cell"] = _cell_section(atoms)
    subsys["+coord"] = _coord_section(atoms)
    _strip_topology_files(subsys)
    _add_missing_kinds(subsys, atoms.get_chemical_symbols())
    _set_printing(force_eval, stress)
    return tree


def _cell_section(atoms: Atoms) -> dict[str, Any]:
    cell = np.asarray(atoms.cell)
    if abs(np.linalg.det(cell)) < 1e-6:
        raise ValueError("CP2K needs a cell with non-zero volume, also for non-periodic systems")
    periodic = "".join(axis for axis, p in zip("xyz", atoms.pbc) if p) or "none"
    section: dict[str, Any] = {key: tuple(float(x) for x in vec) for key, vec in zip("abc", cell)}
    section["periodic"] = periodic
    return section


def _coord_section(atoms: Atoms) -> dict[str, Any]:
    lines = [
        f"{symbol} {x:.10f} {y:.10f} {z:.10f}"
        for symbol, (x, y, z) in zip(atoms.get_chemical_symbols(), atoms.positions)
    ]
    return {"*": lines}


def _strip_topology_files(subsys: dict[str, Any]) -> None:
    """Drop TOPOLOGY settings that would read/replicate coordinates or cells."""
    topology = subsys.get("+topology")
    if topology is None:
        return
    for key in ("coord_file_name", "coord_file_format", "number_of_atoms", "multiple_unit_cell"):
        topology.pop(key, None)
    if not topology:
        del subsys["+topology"]


def _add_missing_kinds(subsys: dict[str, Any], symbols: Sequence[str]) -> None:
    kinds = subsys.setdefault("+kind", [])
    defined = {str(kind.get("_", "")).upper() for kind in kinds}
    for symbol in dict.fromkeys(symbols):  # unique, in order of appearance
        if symbol.upper() not in defined:
            kinds.append({"_": symbol, "element": symbol})


def _set_printing(force_eval: dict[str, Any], stress: bool) -> None:
    printing = force_eval.setdefault("+print", {})
    printing["+forces"] = _print_on(printing.get("+forces"))
    if stress:
        if str(force_eval.get("stress_tensor", "none")).lower() == "none":
            force_eval["stress_tensor"] = "analytical"
        printing["+stress_tensor"] = _print_on(printing.get("+stress_tensor"))
    else:
        force_eval["stress_tensor"] = "none"
        printing.pop("+stress_tensor", None)


def _print_on(section: Mapping[str, Any] | None) -> dict[str, Any]:
    """A print key switched on and written to the main output (no FILENAME)."""
    section = dict(section or {})
    section.pop("filename", None)
    section["_"] = "on"
    return section


def safer_scf(template: Cp2kTemplate) -> tuple[Cp2kTemplate, str]:
    """A copy of the template whose SCF is harder to fail, and what changed.

    With OT (``&SCF/&OT``): twice the inner steps (at least 50) and an outer
    loop with twice its steps (at least 20), the robust CG minimizer instead
    of DIIS. With diagonalisation: twice the steps (at least 100) and half the
    mixing (Broyden when the template had none). Everything else is kept.
    """
    tree = copy.deepcopy(template.tree)
    dft = tree["+force_eval"][0].setdefault("+dft", {})
    scf = dft.setdefault("+scf", {})
    changes = []

    def more(section, key, floor, label):
        old = int(section.get(key, 50))
        section[key] = max(2 * old, floor)
        changes.append(f"{label} {old} -> {section[key]}")

    if "+ot" in scf:
        more(scf, "max_scf", 50, "MAX_SCF")
        if "+outer_scf" in scf:
            more(scf["+outer_scf"], "max_scf", 20, "OUTER_SCF/MAX_SCF")
        else:
            scf["+outer_scf"] = {"eps_scf": scf.get("eps_scf", 1e-5), "max_scf": 20}
            changes.append("added OUTER_SCF with MAX_SCF 20")
        if str(scf["+ot"].get("minimizer", "cg")).lower() == "diis":
            scf["+ot"]["minimizer"] = "cg"
            changes.append("OT minimizer DIIS -> CG")
    else:
        more(scf, "max_scf", 100, "MAX_SCF")
        mixing = scf.setdefault("+mixing", {"method": "broyden_mixing"})
        old = float(mixing.get("alpha", 0.4))
        mixing["alpha"] = old / 2
        changes.append(f"MIXING/ALPHA {old:g} -> {old / 2:g}")
    return dataclasses.replace(template, tree=tree), ", ".join(changes)
