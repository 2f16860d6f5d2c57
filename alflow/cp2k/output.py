"""Reading CP2K's main output: energy, forces and stress, or why there are none.

:func:`parse_output` refuses anything that is not a complete, converged run
and says why with a :class:`Cp2kError` of one of the :data:`ERROR_KINDS`.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np
from ase import units
from ase.stress import full_3x3_to_voigt_6_stress

# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

#: Machine-readable failure kinds of :class:`Cp2kError`.
ERROR_KINDS = ("scf_not_converged", "crashed", "truncated", "parse_error", "timeout", "interrupted")


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
        message += f" [last warning: {shorten(warning, 200)}]"
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


def shorten(text: str, limit: int) -> str:
    """``text`` on one line (whitespace collapsed), cut to ``limit`` characters
    with a trailing ``...`` when longer: for error messages quoting CP2K."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: One line of CP2K's SCF table: step, update method, ..., total energy, change.
_SCF_STEP = re.compile(r"^\s+\d+\s+(?:OT\s|\S+/Diag\.|Diag\.|TS\s)\S*.*\s-?\d+\.\d+\s+-?\d\.\d+E[+-]\d+\s*$",
                       re.MULTILINE)


def scf_steps(text: str) -> int:
    """SCF steps in a CP2K output (all SCF loops, outer loops and MD steps
    together): the rows of its SCF tables."""
    return len(_SCF_STEP.findall(text))
