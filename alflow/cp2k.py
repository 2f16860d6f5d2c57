"""CP2K as the reference method: input generation, running and output parsing.

The user writes an ordinary CP2K input *template* (method, basis sets, SCF
settings, ...) without a structure.  :func:`make_input` injects what belongs
to one singlepoint calculation (cell, coordinates, missing ``KIND`` sections,
run type, force/stress printing) using `cp2k-input-tools`, so the template is
parsed and validated against CP2K's input schema instead of being edited as
text.  :func:`parse_output` reads energy, forces and stress from CP2K's main
output and refuses anything that is not a complete, converged run.

Units: energies in eV, forces in eV/Angstrom, stress in eV/Angstrom^3 (Voigt
order xx, yy, zz, yz, xz, xy) with ASE's sign convention (positive = tensile,
i.e. ``stress = (1/V) dE/d(strain)``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import re
import shlex
import signal
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from ase import Atoms, units
from ase.data import atomic_numbers
from ase.stress import full_3x3_to_voigt_6_stress
from cp2k_input_tools import DEFAULT_CP2K_INPUT_XML
from cp2k_input_tools.generator import CP2KInputGenerator
from cp2k_input_tools.parser import CP2KInputParser
from cp2k_input_tools.parser_errors import ParserError
from cp2k_input_tools.tokenizer import Context

__all__ = [
    "Cp2kError",
    "Cp2kTemplate",
    "ground_state_multiplicity",
    "isolated_atom_energy",
    "load_template",
    "make_input",
    "parse_output",
    "run_cp2k",
    "run_input",
]

# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

#: Machine-readable failure kinds of :class:`Cp2kError`.
ERROR_KINDS = ("scf_not_converged", "crashed", "truncated", "parse_error", "timeout")


class Cp2kError(RuntimeError):
    """A CP2K calculation that did not give trustworthy results.

    ``kind`` is one of :data:`ERROR_KINDS`; ``message`` is a short, one-line
    human-readable explanation.  ``str(error)`` is ``"<kind>: <message>"``.
    """

    def __init__(self, kind: str, message: str) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown Cp2kError kind {kind!r}")
        message = " ".join(message.split())
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


# --------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Cp2kTemplate:
    """A parsed CP2K input template.

    ``tree`` is the canonical nested dictionary of
    :class:`cp2k_input_tools.parser.CP2KInputParser` (sections as ``"+name"``
    keys, repeatable sections as lists, lower-case keyword names), with
    ``@INCLUDE``/``@SET`` already resolved.  Never modify it in place.
    """

    path: Path
    tree: dict[str, Any] = field(repr=False)
    xmlspec: str | None = None  # the CP2K input schema, None: cp2k-input-tools' bundled one

    @property
    def fingerprint(self) -> str:
        """A canonical text of all settings, for hashing (e.g. resumability)."""
        return json.dumps(self.tree, sort_keys=True, default=str)


@functools.lru_cache(maxsize=4)
def _schema(xmlspec: str | os.PathLike[str] | None = None) -> ET.ElementTree:
    """CP2K's input schema (``cp2k --xml``), parsed once per process (~1.5 s)."""
    return ET.parse(xmlspec or DEFAULT_CP2K_INPUT_XML)


class _SchemaParser(CP2KInputParser):
    """:class:`CP2KInputParser` on an already parsed schema (same attributes)."""

    def __init__(self, spec: ET.ElementTree, base_dir: Sequence[Path]) -> None:  # noqa: D107
        self._spec = spec
        self._tree = None
        self._treerefs = []
        self._key_trafo = str.lower
        self._base_inc_dir = base_dir


class _SchemaGenerator(CP2KInputGenerator):
    """:class:`CP2KInputGenerator` on an already parsed schema (same attributes)."""

    def __init__(self, spec: ET.ElementTree, indent_shift: int = 3) -> None:  # noqa: D107
        self._parse_tree = spec
        self._shift = indent_shift


# Keywords in FORCE_EVAL/DFT naming data files; relative names that exist next
# to the template are made absolute because CP2K runs in another directory.
_DFT_FILE_KEYWORDS = ("basis_set_file_name", "potential_file_name")


def load_template(path: str | os.PathLike[str], xmlspec: str | os.PathLike[str] | None = None) -> Cp2kTemplate:
    """Parse and validate a CP2K input template.

    ``xmlspec`` is an optional ``cp2k --xml`` schema file; by default the
    schema bundled with cp2k-input-tools is used.  Raises :class:`ValueError`
    naming the file and the problem if the file cannot be read or parsed, or
    if it does not contain exactly one ``FORCE_EVAL`` section.
    """
    path = Path(path)
    parser = _SchemaParser(_schema(xmlspec), base_dir=[path.parent, Path.cwd()])
    try:
        with path.open() as handle:
            tree = parser.parse(handle)
    except OSError as exc:
        raise ValueError(f"CP2K template {path}: cannot be read ({exc.strerror or exc})") from exc
    except Exception as exc:  # any cp2k-input-tools / pint error is a parse error
        where = _current_section(parser)
        raise ValueError(f"CP2K template {path}: {_describe_parse_error(exc)}{where}") from exc
    force_evals = tree.get("+force_eval", [])
    if len(force_evals) != 1:
        what = "no FORCE_EVAL section" if not force_evals else f"{len(force_evals)} FORCE_EVAL sections"
        raise ValueError(f"CP2K template {path}: has {what}; exactly one is required")
    _absolutize_data_files(force_evals[0], path.parent)
    return Cp2kTemplate(path=path, tree=tree, xmlspec=None if xmlspec is None else str(xmlspec))


def _describe_parse_error(exc: BaseException) -> str:
    """One line describing a cp2k-input-tools exception (message and location)."""
    message = str(exc.args[0]) if exc.args else type(exc).__name__
    if not isinstance(exc, ParserError):
        message = f"{type(exc).__name__}: {message}"
    cause = exc.__cause__
    if cause is not None and cause.args:
        message += f" ({cause.args[0]})"
    ctx = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], Context) else None
    if ctx is not None and getattr(ctx, "linenr", None) is not None:
        message += f" at line {ctx.linenr}"
    if ctx is not None and ctx.line:
        message += f": {ctx.line.strip()!r}"
    return message


def _current_section(parser: CP2KInputParser) -> str:
    """' (in section A/B)' for the section the parser was in, if known."""
    refs = getattr(parser, "_treerefs", None) or []
    names = [ref.name for ref in refs[1:]]
    return f" (in section {'/'.join(names)})" if names else ""


def _absolutize_data_files(force_eval: dict[str, Any], base_dir: Path) -> None:
    dft = force_eval.get("+dft")
    if not dft:
        return
    for key in _DFT_FILE_KEYWORDS:
        if key not in dft:
            continue
        values = dft[key] if isinstance(dft[key], list) else [dft[key]]
        resolved = [_resolve_data_file(v, base_dir) for v in values]
        dft[key] = resolved if isinstance(dft[key], list) else resolved[0]


def _resolve_data_file(name: str, base_dir: Path) -> str:
    candidate = base_dir / name
    if not Path(name).is_absolute() and candidate.is_file():
        return str(candidate.resolve())
    return name  # CP2K will look it up in its data directory


# --------------------------------------------------------------------------
# Pre-flight checks and safer settings
# --------------------------------------------------------------------------

#: Quickstep methods that need a basis set and a pseudopotential per element
#: (the semi-empirical ones, xTB, DFTB, PM6, ..., need neither).
BASIS_METHODS = {"gpw", "gapw", "gapw_xc", "lrigpw", "rigpw", "ofgpw"}


def data_directory() -> Path | None:
    """CP2K's data directory: ``$CP2K_DATA_DIR``, else Debian's /usr/share/cp2k;
    None when neither exists (e.g. on a login node without the CP2K module)."""
    for candidate in (os.environ.get("CP2K_DATA_DIR"), "/usr/share/cp2k"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def needs_basis(template: Cp2kTemplate) -> bool:
    """Whether the template's method needs BASIS_SET and POTENTIAL per element."""
    force_eval = template.tree["+force_eval"][0]
    if str(force_eval.get("method", "quickstep")).lower() not in ("qs", "quickstep"):
        return False
    method = str(force_eval.get("+dft", {}).get("+qs", {}).get("method", "gpw")).lower()
    return method in BASIS_METHODS


def check_elements(template: Cp2kTemplate, elements: Sequence[str],
                   data_dir: Path | None = None) -> list[str]:
    """What the template lacks to label structures with these elements, one
    line per problem (empty: nothing). For methods with basis sets
    (:data:`BASIS_METHODS`): every element needs a ``&KIND`` named after it
    with ``BASIS_SET`` and ``POTENTIAL`` (the workflow's coordinates use the
    chemical symbols as kind names), the data files named in ``&DFT`` must
    exist (next to the template, absolute, or in ``data_dir``, default
    :func:`data_directory`; not checked when it is unknown) and must list
    that basis set and potential for that element."""
    if not needs_basis(template):
        return []
    force_eval = template.tree["+force_eval"][0]
    dft = force_eval.get("+dft", {})
    kinds = {str(k.get("_", "")).lower(): k for k in force_eval.get("+subsys", {}).get("+kind", [])}
    data_dir = data_dir or data_directory()
    problems: list[str] = []
    known, files = {}, {}  # per "basis set"/"potential": (element, name) pairs, file names
    for key, what, default in (("basis_set_file_name", "basis set", "BASIS_SET"),
                               ("potential_file_name", "potential", "POTENTIAL")):
        names = dft.get(key) or [default]
        files[what] = names = names if isinstance(names, list) else [names]
        found = [_data_file(n, data_dir) for n in names]
        problems += [f"{key.upper()} {n}: no such file next to the template or in "
                     f"CP2K's data directory {data_dir}" for n, f in zip(names, found)
                     if f is None and data_dir is not None]
        # names can be looked up only when every file was found
        known[what] = _named_entries(found) if all(found) else None
    method = str(dft.get("+qs", {}).get("method", "gpw")).upper()
    for element in elements:
        kind = kinds.get(element.lower())
        if kind is None:
            problems.append(f"element {element}: no &KIND {element} section with BASIS_SET and "
                            f"POTENTIAL (method {method} needs both for every element)")
            continue
        basis = kind.get("basis_set") or []
        basis = [str(b).split()[-1] for b in (basis if isinstance(basis, list) else [basis])]
        for what, keyword, names in (("basis set", "BASIS_SET", basis),
                                     ("potential", "POTENTIAL", [kind.get("potential")])):
            names = [n for n in names if n]
            if not names:
                problems.append(f"element {element}: &KIND {element} has no {keyword}")
            elif known[what] is not None:
                problems += [f"element {element}: {what} {name} is not in "
                             f"{', '.join(files[what])}" for name in names
                             if (element.lower(), name.lower()) not in known[what]]
    return problems


def _data_file(name: str, data_dir: Path | None) -> Path | None:
    path = Path(name)
    if path.is_absolute():
        return path if path.is_file() else None
    if data_dir is not None and (data_dir / name).is_file():
        return data_dir / name
    return None


def _named_entries(files: Sequence[Path]) -> set[tuple[str, str]]:
    """(element, name) pairs of CP2K basis/potential files: lines that start with
    an element symbol followed by the names of the entry."""
    entries: set[tuple[str, str]] = set()
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) >= 2 and words[0].capitalize() in atomic_numbers:
                entries.update((words[0].lower(), w.lower()) for w in words[1:])
    return entries


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


# --------------------------------------------------------------------------
# Input generation
# --------------------------------------------------------------------------

def _render(tree: Mapping[str, Any], xmlspec: str | None = None) -> str:
    """CP2K input text for a canonical tree."""
    generator = _SchemaGenerator(_schema(xmlspec))
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


def make_input(template: Cp2kTemplate, atoms: Atoms, project: str = "label", *, stress: bool | None = None) -> str:
    """CP2K input text for an ``ENERGY_FORCE`` singlepoint on ``atoms``.

    Injects CELL, COORD, a bare ``KIND`` (``ELEMENT`` only) for each element
    without a ``KIND`` in the template, ``GLOBAL/RUN_TYPE`` and
    ``GLOBAL/PROJECT``; switches on force printing and, when ``stress`` is
    true (default: ``atoms`` periodic in all three directions), the analytical
    stress tensor and its printing.  Coordinate/cell file settings of the
    template are removed; everything else is kept.
    """
    if stress is None:
        stress = bool(np.all(atoms.pbc))
    return _render(_singlepoint_tree(template.tree, atoms, project, stress), template.xmlspec)


def _singlepoint_tree(base: Mapping[str, Any], atoms: Atoms, project: str, stress: bool) -> dict[str, Any]:
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


# --------------------------------------------------------------------------
# Output parsing
# --------------------------------------------------------------------------

#: Normal end of a CP2K run (the banner at the very end of the output).
END_MARKER = "PROGRAM ENDED AT"
#: Start of CP2K's abort banner.
ABORT_MARKER = "[ABORT]"
#: SCF failures: the warning "SCF run NOT converged" (inner/outer SCF) and the
#: outer/CDFT loop messages "... SCF loop FAILED to converge after ...".
_SCF_FAILED = re.compile(r"SCF run NOT converged|SCF loop FAILED to converge", re.IGNORECASE)
_ENERGY = re.compile(
    r"^\s*ENERGY\|\s+Total FORCE_EVAL \(\s*\w+\s*\) energy \[(?P<unit>[^\]]+)\]:\s*(?P<value>\S+)", re.MULTILINE
)
_FORCES = re.compile(r"^\s*ATOMIC FORCES in \[(?P<unit>[^\]]+)\]", re.MULTILINE)
_STRESS = re.compile(r"^\s*STRESS\|\s+(?:Analytical|Numerical) stress tensor \[(?P<unit>[^\]]+)\]", re.MULTILINE)
_STRESS_ROW = re.compile(r"^\s*STRESS\|\s+([xyz])\s+(\S+)\s+(\S+)\s+(\S+)\s*$")
_ABORT_ART = re.compile(r"^\s*(?:\[ABORT\]|\\___/|/\s+\\|___|O/\||/\|\s\||\|)")
_WARNING = re.compile(r"^\s*\*\*\* WARNING in .*$(?:\n^\s*\*\*\*.*\*\*\*\s*$)*", re.MULTILINE)

_ENERGY_UNITS = {"a.u.": units.Hartree, "hartree": units.Hartree, "ev": 1.0}
_FORCE_UNITS = {"a.u.": units.Hartree / units.Bohr, "hartree/bohr": units.Hartree / units.Bohr}
_PRESSURE_UNITS = {"gpa": units.GPa, "bar": units.bar}


def parse_output(text: str, n_atoms: int) -> dict[str, Any]:
    """Energy (eV), forces (eV/A) and stress (Voigt, eV/A^3, ASE sign) of a CP2K output.

    ``stress`` is ``None`` when the output contains no stress tensor.  Raises
    :class:`Cp2kError` with kind ``crashed`` (abort banner), ``scf_not_converged``
    (any SCF did not converge), ``truncated`` (no ``PROGRAM ENDED AT``) or
    ``parse_error`` (energy/forces missing, malformed, non-finite or for the
    wrong number of atoms), checked in this order.
    """
    abort = _abort_message(text)
    if abort is not None:
        raise Cp2kError("crashed", abort)
    scf = _SCF_FAILED.search(text)
    if scf is not None:
        line = text[text.rfind("\n", 0, scf.start()) + 1 : text.find("\n", scf.end())]
        raise Cp2kError("scf_not_converged", line.strip(" *"))
    if END_MARKER not in text:
        raise Cp2kError("truncated", f"no '{END_MARKER}' marker: the run was killed or the output is incomplete")
    return {"energy": _parse_energy(text), "forces": _parse_forces(text, n_atoms), "stress": _parse_stress(text)}


def _abort_message(text: str) -> str | None:
    """The text of CP2K's abort banner (plus the last warning), or None."""
    start = text.rfind(ABORT_MARKER)
    if start < 0:
        return None
    start = text.rfind("\n", 0, start) + 1
    parts: list[str] = []
    for line in text[start:].splitlines():
        stripped = line.strip()
        if stripped and set(stripped) == {"*"}:
            break
        content = _ABORT_ART.sub("", stripped.strip("*"), count=1).strip()
        if content:
            parts.append(content)
    if parts and re.fullmatch(r"\S+\.F:\d+", parts[-1]):
        parts[-1] = f"({parts[-1]})"
    message = " ".join(parts) or "CP2K aborted"
    warnings = _WARNING.findall(text[:start])
    if warnings:
        warning = " ".join(w.strip(" *") for w in warnings[-1].splitlines())
        message += f" [last warning: {_shorten(warning, 200)}]"
    return message


def _parse_energy(text: str) -> float:
    matches = list(_ENERGY.finditer(text))
    if not matches:
        raise Cp2kError("parse_error", "no 'ENERGY| Total FORCE_EVAL' line in the output")
    match = matches[-1]
    factor = _unit_factor(_ENERGY_UNITS, match.group("unit"), "energy")
    energy = _to_float(match.group("value"), "energy") * factor
    return energy


def _parse_forces(text: str, n_atoms: int) -> np.ndarray:
    matches = list(_FORCES.finditer(text))
    if not matches:
        raise Cp2kError("parse_error", "no 'ATOMIC FORCES' block in the output")
    match = matches[-1]
    factor = _unit_factor(_FORCE_UNITS, match.group("unit"), "force")
    rows: list[list[float]] = []
    for line in text[match.end() :].splitlines()[1:]:
        fields = line.split()
        if not fields or fields[0] == "#":
            if rows:
                break
            continue
        if line.strip().startswith("SUM OF ATOMIC FORCES"):
            break
        if len(fields) != 6:
            raise Cp2kError("parse_error", f"malformed force line {line.strip()!r}")
        rows.append([_to_float(v, "force") for v in fields[3:6]])
    if len(rows) != n_atoms:
        raise Cp2kError("parse_error", f"force block has {len(rows)} atoms, expected {n_atoms}")
    return np.array(rows, dtype=float) * factor


def _parse_stress(text: str) -> np.ndarray | None:
    matches = list(_STRESS.finditer(text))
    if not matches:
        return None
    match = matches[-1]
    factor = _unit_factor(_PRESSURE_UNITS, match.group("unit"), "stress")
    tensor: dict[str, list[float]] = {}
    for line in text[match.end() :].splitlines()[1:6]:
        row = _STRESS_ROW.match(line)
        if row:
            tensor[row.group(1)] = [_to_float(v, "stress") for v in row.groups()[1:]]
    if sorted(tensor) != ["x", "y", "z"]:
        raise Cp2kError("parse_error", "incomplete stress tensor block")
    full = np.array([tensor["x"], tensor["y"], tensor["z"]]) * factor
    # CP2K prints the pressure-like tensor (positive = compressed); ASE's
    # stress is its negative (verified by finite differences, see tests).
    return -full_3x3_to_voigt_6_stress(full)


def _unit_factor(table: Mapping[str, float], unit: str, what: str) -> float:
    try:
        return table[unit.strip().lower()]
    except KeyError:
        raise Cp2kError("parse_error", f"unknown {what} unit [{unit}]") from None


def _to_float(value: str, what: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise Cp2kError("parse_error", f"cannot read {what} value {value!r}") from None
    if not np.isfinite(number):
        raise Cp2kError("parse_error", f"non-finite {what} value {value!r}")
    return number


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------
# Running CP2K
# --------------------------------------------------------------------------

INPUT_NAME = "label.inp"
OUTPUT_NAME = "label.out"
LOG_NAME = "label.log"  # stdout + stderr of the launcher/CP2K, when not empty
#: Scratch files removed after each run (wavefunction restarts and backups).
SCRATCH_PATTERNS = ("*.wfn", "*.wfn.bak-*", "*.kp", "*.kp.bak-*")
_OPENMPI_LAUNCHERS = {"mpirun", "mpiexec", "orterun"}


def run_cp2k(atoms: Atoms, template: Cp2kTemplate, workdir: str | os.PathLike[str],
             **run_kwargs: Any) -> dict[str, Any]:
    """Singlepoint of ``atoms`` with CP2K in ``workdir``: :func:`make_input`,
    then :func:`run_input` (which takes the launch options ``command``,
    ``mpi``, ``tasks``, ``cpus_per_task`` and ``timeout``)."""
    return run_input(make_input(template, atoms), len(atoms), workdir, **run_kwargs)


def run_input(
    input_text: str,
    n_atoms: int,
    workdir: str | os.PathLike[str],
    *,
    command: str = "cp2k",
    mpi: str | None = "mpirun",
    tasks: int = 1,
    cpus_per_task: int = 1,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run a ready CP2K input in ``workdir`` and parse its output (:func:`parse_output`).

    Runs ``{mpi} -n {tasks} {command} -i label.inp -o label.out`` (no launcher
    when ``mpi`` is empty) with ``OMP_NUM_THREADS={cpus_per_task}``.  Raises
    :class:`Cp2kError` for any failed calculation; an unusable ``command``
    raises :class:`OSError`.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / INPUT_NAME).write_text(input_text)
    output = workdir / OUTPUT_NAME
    for stale in (output, workdir / LOG_NAME):
        stale.unlink(missing_ok=True)  # never parse a stale output
    argv = launch_command(command, mpi, tasks)
    try:
        returncode, log = _execute(argv, workdir, _environment(argv, cpus_per_task), timeout)
    finally:
        _remove_scratch(workdir)
    if not output.is_file():
        raise Cp2kError("crashed", f"no {OUTPUT_NAME} written (exit status {returncode}): {_tail(log)}")
    text = output.read_text(errors="replace")
    try:
        result = parse_output(text, n_atoms)
    except Cp2kError as exc:
        if returncode != 0 and exc.kind in ("truncated", "parse_error"):
            raise Cp2kError("crashed", f"exit status {returncode}: {_tail(log or text)}") from exc
        raise
    if returncode != 0:
        raise Cp2kError("crashed", f"exit status {returncode} despite a complete output: {_tail(log or text)}")
    return result


def launch_command(command: str, mpi: str | None, tasks: int) -> list[str]:
    """The argv of one CP2K run (launcher flags split like a shell would)."""
    argv = shlex.split(command) + ["-i", INPUT_NAME, "-o", OUTPUT_NAME]
    if mpi:
        argv = shlex.split(mpi) + ["-n", str(int(tasks))] + argv
    return argv


def _environment(argv: Sequence[str], cpus_per_task: int) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(int(cpus_per_task))
    if os.path.basename(argv[0]) in _OPENMPI_LAUNCHERS:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
            env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        if cpus_per_task > 1:
            # Open MPI binds each rank to one core by default (for <= 2 ranks),
            # which would put all OpenMP threads of a rank on that core.
            env.setdefault("OMPI_MCA_hwloc_base_binding_policy", "none")
    return env


def _execute(argv: list[str], workdir: Path, env: dict[str, str], timeout: float | None) -> tuple[int, str]:
    """Run ``argv`` in its own process group; (exit status, stdout+stderr)."""
    proc = subprocess.Popen(
        argv,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise Cp2kError("timeout", f"exceeded the per-structure time limit of {timeout:g} s "
                        "and was killed") from None
    except BaseException:
        _kill_group(proc)
        raise
    if log.strip():
        (workdir / LOG_NAME).write_text(log)
    return proc.returncode, log


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _remove_scratch(workdir: Path) -> None:
    for pattern in SCRATCH_PATTERNS:
        for path in workdir.glob(pattern):
            path.unlink(missing_ok=True)


def _tail(text: str, lines: int = 6, limit: int = 400) -> str:
    kept = [line.strip() for line in text.splitlines() if line.strip() and not set(line.strip()) <= {"-", "*", "="}]
    return _shorten(" | ".join(kept[-lines:]), limit) or "(no output)"


# --------------------------------------------------------------------------
# Isolated atoms
# --------------------------------------------------------------------------

#: Edge of the cubic box for isolated-atom calculations (Angstrom).
ATOM_BOX = 12.0

# Ground-state valence configurations that differ from the Madelung (aufbau)
# order; subshell -> occupation replacing the aufbau occupation.
_CONFIG_EXCEPTIONS: dict[str, dict[str, int]] = {
    "Cr": {"3d": 5, "4s": 1},
    "Cu": {"3d": 10, "4s": 1},
    "Nb": {"4d": 4, "5s": 1},
    "Mo": {"4d": 5, "5s": 1},
    "Ru": {"4d": 7, "5s": 1},
    "Rh": {"4d": 8, "5s": 1},
    "Pd": {"4d": 10, "5s": 0},
    "Ag": {"4d": 10, "5s": 1},
    "La": {"4f": 0, "5d": 1},
    "Gd": {"4f": 7, "5d": 1},
    "Pt": {"5d": 9, "6s": 1},
    "Au": {"5d": 10, "6s": 1},
}
_L_LETTERS = "spdf"


def _aufbau_configuration(z: int) -> dict[str, int]:
    """Subshell occupations filled in Madelung (n + l, then n) order."""
    subshells = sorted(((n, l) for n in range(1, 8) for l in range(min(n, 4))), key=lambda s: (s[0] + s[1], s[0]))
    config: dict[str, int] = {}
    left = z
    for n, l in subshells:
        if left == 0:
            break
        occupation = min(left, 2 * (2 * l + 1))
        config[f"{n}{_L_LETTERS[l]}"] = occupation
        left -= occupation
    return config


def ground_state_multiplicity(symbol: str) -> int:
    """Spin multiplicity 2S+1 of the free atom's ground state by Hund's rule.

    Uses the aufbau configuration with the common exceptions (Cr, Cu, Nb, Mo,
    Ru, Rh, Pd, Ag, La, Gd, Pt, Au); every open subshell contributes its
    maximal number of unpaired electrons.  Exact for main-group and 3d/4d/5d
    elements; an approximation for some lanthanides/actinides.
    """
    z = atomic_numbers[symbol]
    config = _aufbau_configuration(z)
    config.update(_CONFIG_EXCEPTIONS.get(symbol, {}))
    unpaired = 0
    for subshell, occupation in config.items():
        capacity = 2 * (2 * _L_LETTERS.index(subshell[-1]) + 1)
        unpaired += min(occupation, capacity - occupation)
    return unpaired + 1


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
    spin-polarised (UKS) with the Hund's-rule multiplicity and charge 0.  The
    template's SCF algorithm is replaced by orbital transformation (OT) with
    an outer SCF loop and an atomic guess, because diagonalisation with
    density mixing does not converge (it oscillates between the degenerate
    orbitals of an open shell) and smearing would add an entropy term.  Other
    settings (method, basis, cutoffs, convergence thresholds) are kept.
    ``run_kwargs`` are passed to :func:`run_input`.
    """
    tree = isolated_atom_tree(template, symbol, box)
    text = _render(tree, template.xmlspec)
    return float(run_input(text, 1, workdir, **run_kwargs)["energy"])


def isolated_atom_tree(template: Cp2kTemplate, symbol: str, box: float = ATOM_BOX) -> dict[str, Any]:
    """The canonical input tree of :func:`isolated_atom_energy`."""
    atoms = Atoms(symbol, positions=[[box / 2] * 3], cell=[box] * 3, pbc=True)
    tree = _singlepoint_tree(template.tree, atoms, "label", stress=False)
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
