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

One job per module, everything public re-exported here:

- :mod:`.template`: reading and validating a template (:func:`load_template`);
- :mod:`.checks`: pre-flight checks of a template for some elements;
- :mod:`.inputs`: input text for a singlepoint or any tree, safer SCF settings;
- :mod:`.output`: parsing CP2K's output, :class:`Cp2kError`;
- :mod:`.runner`: running an input (launcher, threads, time limit, scratch);
- :mod:`.isolated`: isolated-atom energies.
"""

from __future__ import annotations

from .checks import BASIS_METHODS, check_elements, data_directory, needs_basis
from .inputs import make_input, render_input, safer_scf, singlepoint_tree, wavefunction_guess
from .isolated import ATOM_BOX, ground_state_multiplicity, isolated_atom_energy, isolated_atom_tree
from .output import ABORT_MARKER, END_MARKER, ERROR_KINDS, Cp2kError, parse_output, scf_steps
from .runner import (INPUT_NAME, LOG_NAME, OUTPUT_NAME, SCRATCH_PATTERNS, exit_on_sigterm,
                     launch_command, launch_environment, run_cp2k, run_input, stop_all_runs)
from .template import Cp2kTemplate, load_template

__all__ = [
    "ABORT_MARKER",
    "ATOM_BOX",
    "BASIS_METHODS",
    "END_MARKER",
    "ERROR_KINDS",
    "INPUT_NAME",
    "LOG_NAME",
    "OUTPUT_NAME",
    "SCRATCH_PATTERNS",
    "Cp2kError",
    "Cp2kTemplate",
    "check_elements",
    "data_directory",
    "exit_on_sigterm",
    "ground_state_multiplicity",
    "isolated_atom_energy",
    "isolated_atom_tree",
    "launch_command",
    "launch_environment",
    "load_template",
    "make_input",
    "needs_basis",
    "parse_output",
    "render_input",
    "run_cp2k",
    "run_input",
    "safer_scf",
    "scf_steps",
    "singlepoint_tree",
    "stop_all_runs",
    "wavefunction_guess",
]
