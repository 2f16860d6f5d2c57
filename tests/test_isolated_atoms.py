"""Isolated-atom SCF settings with a real DFT template: PBE/DZVP-MOLOPT-SR-GTH,
the user's input from the issue (the shipped water template at CUTOFF 300)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from ase import units

from alflow import cp2k
from alflow.cp2k.isolated import isolated_atom_tree

REPO = Path(__file__).resolve().parent.parent
PBE = REPO / "config" / "cp2k" / "water_pbe.inp"
XTB = REPO / "config" / "cp2k" / "water_xtb.inp"

# Energies (Ha) of the free atoms with the PBE template at CUTOFF 300, converged
# with the former isolated-atom settings: the template's OT (DIIS,
# FULL_SINGLE_INVERSE), 20 inner steps, outer SCF up to 20 loops, EPS_SCF 1e-6,
# atomic guess, 12 A box; CP2K 2023.1 (Debian), 1 rank. H took 4 SCF steps,
# O 359 (18 outer loops: DIIS fell back to steepest descent). The new settings
# (CG, FULL_KINETIC) took 5 and 89 (benchmarks/RESULTS.md, 2026-11-29).
REFERENCE_300 = {"H": -0.464004096092672, "O": -15.861211290939133}
MAX_STEPS = {"H": 10, "O": 100}

_OUTER_DONE = re.compile(r"outer SCF loop converged in\s+\d+\s+iterations or\s+(\d+)\s+steps")


def total_scf_steps(output: str) -> int:
    """All SCF steps of a converged run with an outer loop, CP2K's own count
    (line-search energy evaluations of CG included)."""
    return sum(int(n) for n in _OUTER_DONE.findall(output))


def pbe_template(tmp_path: Path, cutoff: int = 300) -> cp2k.Cp2kTemplate:
    if shutil.which("cp2k") is None:
        pytest.skip("needs the cp2k binary")
    data = cp2k.data_directory()
    if data is None or not (data / "BASIS_MOLOPT").is_file() or not (data / "GTH_POTENTIALS").is_file():
        pytest.skip("needs CP2K's data files BASIS_MOLOPT and GTH_POTENTIALS")
    text = PBE.read_text()
    assert "CUTOFF 400 " in text
    path = tmp_path / f"pbe_{cutoff}.inp"
    path.write_text(text.replace("CUTOFF 400 ", f"CUTOFF {cutoff} "))
    return cp2k.load_template(path)


def test_atom_scf_settings_for_dft_and_xtb(tmp_path):
    text = PBE.read_text()
    # the user's SCF (DIIS, FULL_SINGLE_INVERSE, ADDED_MOS, its MAX_SCF): only EPS_SCF stays
    text = text.replace("EPS_SCF 1.0E-6\n      MAX_SCF 20", "EPS_SCF 3.0E-7\n      MAX_SCF 300\n      ADDED_MOS 10")
    (tmp_path / "user.inp").write_text(text)
    tree = isolated_atom_tree(cp2k.load_template(tmp_path / "user.inp"), "O")
    dft = tree["+force_eval"][0]["+dft"]
    scf = dft["+scf"]
    assert dft["uks"] is True and dft["multiplicity"] == 3
    assert scf["+ot"] == {"_": True, "minimizer": "cg", "linesearch": "2pnt", "preconditioner": "full_kinetic"}
    assert scf["eps_scf"] == pytest.approx(3e-7) and scf["+outer_scf"]["eps_scf"] == pytest.approx(3e-7)
    assert (scf["max_scf"], scf["+outer_scf"]["max_scf"], scf["scf_guess"]) == (20, 20, "atomic")
    assert "added_mos" not in scf
    assert dft["+mgrid"]["cutoff"] == 400 and dft["+qs"]["eps_default"] == pytest.approx(1e-12)
    # xTB has no kinetic matrix (CP2K aborts with FULL_KINETIC): its own OT settings stay
    scf = isolated_atom_tree(cp2k.load_template(XTB), "O")["+force_eval"][0]["+dft"]["+scf"]
    assert scf["+ot"]["minimizer"] == "diis" and scf["+ot"]["preconditioner"] == "full_all"
    assert scf["max_scf"] == 10


@pytest.mark.parametrize("symbol", ["H", pytest.param("O", marks=pytest.mark.slow)])
def test_isolated_atom_pbe_energy_unchanged_in_fewer_steps(tmp_path, symbol):
    template = pbe_template(tmp_path, cutoff=300)
    # both cores: the reference energies were converged on one rank
    energy = cp2k.isolated_atom_energy(symbol, template, tmp_path / "run", mpi="mpirun", tasks=2)
    steps = total_scf_steps((tmp_path / "run" / cp2k.OUTPUT_NAME).read_text())
    assert energy / units.Hartree == pytest.approx(REFERENCE_300[symbol], abs=1e-5)
    assert 0 < steps < MAX_STEPS[symbol]
