"""alflow.cp2k against the real CP2K binary (GFN1-xTB; one small PBE run)."""
from __future__ import annotations

import dataclasses
import functools
import io
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.data import atomic_numbers, chemical_symbols
from cp2k_input_tools.parser import CP2KInputParser

from alflow import cp2k
from alflow.cp2k import Cp2kError

REPO = Path(__file__).resolve().parent.parent
XTB = REPO / "config" / "cp2k" / "water_xtb.inp"
PBE = REPO / "config" / "cp2k" / "water_pbe.inp"

pytestmark = pytest.mark.skipif(shutil.which("cp2k") is None, reason="needs the cp2k binary")

# A diagonalisation-based xTB template with MAX_SCF 2 (too few to converge).
DIAG_TEMPLATE = REPO / "tests" / "data" / "xtb_diag_max_scf_2.inp"


def water_box(seed: int = 0, n: int = 2, spacing: float = 3.1) -> Atoms:
    """n^3 randomly oriented H2O on a cubic grid (n=2: 24 atoms, 6.2 A, ~1 g/cm3)."""
    rng = np.random.default_rng(seed)
    atoms = Atoms(cell=[n * spacing] * 3, pbc=True)
    for idx in np.ndindex(n, n, n):
        mol = molecule("H2O")
        mol.rotate(rng.uniform(0, 360), rng.normal(size=3), center="COM")
        mol.translate((np.array(idx) + 0.5) * spacing - mol.get_center_of_mass())
        atoms += mol
    return atoms


def water_molecule(box: float = 6.0) -> Atoms:
    atoms = molecule("H2O", cell=[box] * 3, pbc=True)
    atoms.center()
    return atoms


def write_template(tmp_path: Path, text: str, name: str = "template.inp") -> cp2k.Cp2kTemplate:
    path = tmp_path / name
    path.write_text(text)
    return cp2k.load_template(path)


@pytest.fixture(scope="module")
def xtb() -> cp2k.Cp2kTemplate:
    return cp2k.load_template(XTB)


@pytest.fixture(scope="module")
def box_run(xtb, tmp_path_factory):
    """A converged xTB singlepoint of a rattled 24-atom water box (via mpirun)."""
    atoms = water_box()
    atoms.rattle(0.05, seed=1)
    workdir = tmp_path_factory.mktemp("box")
    result = cp2k.run_cp2k(atoms, xtb, workdir, mpi="mpirun", tasks=1, cpus_per_task=1)
    return atoms, result, (workdir / "label.out").read_text()


# --------------------------------------------------------------------------
# templates and input generation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("path", [XTB, PBE])
def test_shipped_templates_load(path):
    template = cp2k.load_template(path)
    assert len(template.tree["+force_eval"]) == 1
    assert "+cell" not in template.tree["+force_eval"][0].get("+subsys", {})


def _in_scf(line: str) -> str:
    return f"&FORCE_EVAL\n  &DFT\n    &SCF\n      {line}\n    &END SCF\n  &END DFT\n&END FORCE_EVAL\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (_in_scf("SCF_GESS ATOMIC"), "invalid keyword 'SCF_GESS'.*line 4"),
        (_in_scf("EPS_SCF abc"), "abc"),
        (_in_scf("&SCFX\n&END SCFX"), "invalid section 'SCFX'"),
        ("&FORCE_EVAL\n  &DFT\n", "not closed"),
        ("&GLOBAL\n  PROJECT x\n&END GLOBAL\n", "no FORCE_EVAL"),
    ],
    ids=["keyword", "value", "section", "unclosed", "no_force_eval"],
)
def test_broken_template_is_a_value_error_naming_the_file(tmp_path, text, expected):
    path = tmp_path / "broken.inp"
    path.write_text(text)
    with pytest.raises(ValueError, match=expected) as info:
        cp2k.load_template(path)
    assert str(path) in str(info.value)


def test_missing_template_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="nothere.inp"):
        cp2k.load_template(tmp_path / "nothere.inp")


@functools.lru_cache(maxsize=1)
def _parser() -> CP2KInputParser:
    return CP2KInputParser()  # parsing CP2K's schema takes ~1.5 s: once per session


def parse_input(text: str) -> tuple[dict, CP2KInputParser]:
    """Parse generated input back with cp2k-input-tools' own parser."""
    parser = _parser()
    return parser.parse(io.StringIO(text)), parser


def test_make_input_injects_structure_and_keeps_user_settings(tmp_path):
    template = write_template(
        tmp_path,
        """\
&GLOBAL
  RUN_TYPE GEO_OPT
  PRINT_LEVEL LOW
&END GLOBAL
&FORCE_EVAL
  METHOD QS
  &DFT
    &QS
      METHOD xTB
      &XTB
        DO_EWALD T
      &END XTB
    &END QS
    &SCF
      EPS_SCF 3.0E-7
    &END SCF
  &END DFT
  &SUBSYS
    &CELL
      ABC 1 1 1
    &END CELL
    &TOPOLOGY
      COORD_FILE_NAME old.xyz
      COORD_FILE_FORMAT XYZ
    &END TOPOLOGY
    &KIND O
      ELEMENT O
      MASS 17.0
    &END KIND
  &END SUBSYS
&END FORCE_EVAL
""",
    )
    atoms = water_box()
    atoms.set_cell(atoms.cell * [1.0, 1.1, 1.2], scale_atoms=True)
    tree, parser = parse_input(cp2k.make_input(template, atoms, project="myproj"))

    assert tree["+global"] == {"run_type": "energy_force", "print_level": "low", "project_name": "myproj"}
    force_eval = tree["+force_eval"][0]
    assert force_eval["stress_tensor"] == "analytical"
    assert force_eval["+print"]["+forces"]["_"].upper() == "ON"
    assert force_eval["+print"]["+stress_tensor"]["_"].upper() == "ON"
    assert force_eval["+dft"]["+qs"]["+xtb"]["do_ewald"] is True
    assert force_eval["+dft"]["+scf"]["eps_scf"] == pytest.approx(3e-7)
    subsys = force_eval["+subsys"]
    assert "+topology" not in subsys
    cell = subsys["+cell"]
    assert cell["periodic"] == "xyz" and "abc" not in cell
    np.testing.assert_allclose([cell["a"], cell["b"], cell["c"]], atoms.cell.array, atol=1e-10)
    kinds = {kind["_"]: kind for kind in subsys["+kind"]}
    assert kinds["O"] == {"_": "O", "element": "O", "mass": 17.0}
    assert kinds["H"] == {"_": "H", "element": "H"}
    coords = list(parser.coords())
    assert [c[0] for c in coords] == atoms.get_chemical_symbols()
    np.testing.assert_allclose([c[1] for c in coords], atoms.positions, atol=1e-9)


def test_make_input_non_periodic_has_no_stress(xtb):
    atoms = water_molecule()
    atoms.pbc = [True, True, False]
    tree, _ = parse_input(cp2k.make_input(xtb, atoms))
    force_eval = tree["+force_eval"][0]
    assert force_eval["+subsys"]["+cell"]["periodic"] == "xy"
    assert force_eval["stress_tensor"] == "none"
    assert "+stress_tensor" not in force_eval["+print"]
    atoms.pbc = False
    tree, _ = parse_input(cp2k.make_input(xtb, atoms))
    assert tree["+force_eval"][0]["+subsys"]["+cell"]["periodic"] == "none"


def test_make_input_needs_a_cell(xtb):
    with pytest.raises(ValueError, match="cell"):
        cp2k.make_input(xtb, molecule("H2O"))


def test_launch_command_and_environment():
    assert cp2k.launch_command("cp2k", "", 4) == ["cp2k", "-i", "label.inp", "-o", "label.out"]
    assert cp2k.launch_command("cp2k.psmp", "srun --mpi=pmix", 2) == [
        "srun", "--mpi=pmix", "-n", "2", "-c", "1", "cp2k.psmp", "-i", "label.inp", "-o",
        "label.out"]
    # hybrid MPI/OpenMP: srun gets the threads per rank (it does not inherit
    # the job's --cpus-per-task since Slurm 22.05), mpirun does not take -c
    assert cp2k.launch_command("cp2k.psmp", "srun", 4, 8)[:5] == ["srun", "-n", "4", "-c", "8"]
    assert cp2k.launch_command("cp2k.psmp", "srun --cpus-per-task=2", 4, 8)[:4] == [
        "srun", "--cpus-per-task=2", "-n", "4"]
    assert "-c" not in cp2k.launch_command("cp2k.psmp", "mpirun", 4, 8)
    env = cp2k.launch_environment(["mpirun", "-n", "1", "cp2k"], 3)
    assert env["OMP_NUM_THREADS"] == "3"
    if os.geteuid() == 0:
        assert env["OMPI_ALLOW_RUN_AS_ROOT"] == env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] == "1"
    # several runs side by side in one job: SLURM steps that hold only their
    # own cores, Open MPI ranks not all bound to the first cores
    assert cp2k.launch_command("cp2k.psmp", "srun", 4, 2, concurrent=3)[:6] == [
        "srun", "--exact", "-n", "4", "-c", "2"]
    for given in ("srun --exact", "srun --exclusive", "srun --overlap"):
        assert cp2k.launch_command("cp2k", given, 4, 1, concurrent=2).count(given.split()[1]) == 1
        assert "--exact" not in cp2k.launch_command("cp2k", "srun", 4, 1, concurrent=1)
    assert "--exact" not in cp2k.launch_command("cp2k", "mpirun", 4, 1, concurrent=2)
    env = cp2k.launch_environment(["mpirun", "-n", "2", "cp2k"], 1, concurrent=2)
    assert env["OMPI_MCA_hwloc_base_binding_policy"] == "none"


# --------------------------------------------------------------------------
# real runs and output parsing
# --------------------------------------------------------------------------


def test_run_cp2k_water_box(box_run):
    atoms, result, text = box_run
    assert np.isfinite(result["energy"]) and result["energy"] < 0
    assert result["forces"].shape == (len(atoms), 3) and np.all(np.isfinite(result["forces"]))
    assert result["stress"].shape == (6,) and np.all(np.isfinite(result["stress"]))
    np.testing.assert_allclose(result["forces"].sum(axis=0), 0.0, atol=1e-4)
    parsed = cp2k.parse_output(text, len(atoms))
    assert parsed["energy"] == result["energy"]


def test_forces_match_finite_difference_of_energy(box_run, xtb, tmp_path):
    atoms, result, _ = box_run
    atom, axis = np.unravel_index(np.argmax(np.abs(result["forces"])), result["forces"].shape)
    h = 1e-3
    energies = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[atom, axis] += sign * h
        energies.append(cp2k.run_cp2k(moved, xtb, tmp_path, mpi="")["energy"])
    numeric = -(energies[0] - energies[1]) / (2 * h)
    assert numeric == pytest.approx(result["forces"][atom, axis], rel=2e-3, abs=2e-3)


@pytest.mark.slow
def test_stress_matches_finite_difference_of_energy(box_run, xtb, tmp_path):
    """ASE convention: stress = (1/V) dE/d(strain); CP2K prints the negative."""
    atoms, result, _ = box_run
    volume, d = atoms.get_volume(), 0.005
    for (i, j), voigt in [((0, 0), 0), ((0, 1), 5)]:
        energies = []
        for sign in (1, -1):
            strain = np.zeros((3, 3))
            strain[i, j] = strain[j, i] = sign * d  # symmetric strain
            strained = atoms.copy()
            strained.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
            energies.append(cp2k.run_cp2k(strained, xtb, tmp_path, mpi="")["energy"])
        derivative = (energies[0] - energies[1]) / (2 * d) / volume
        if i != j:
            derivative /= 2  # both eps_ij and eps_ji were strained
        assert derivative == pytest.approx(result["stress"][voigt], rel=0.03, abs=2e-4)


def test_wrong_atom_count_is_a_parse_error(box_run):
    _, _, text = box_run
    with pytest.raises(Cp2kError) as info:
        cp2k.parse_output(text, 23)
    assert info.value.kind == "parse_error" and "24" in info.value.message


def test_missing_energy_is_a_parse_error(box_run):
    _, _, text = box_run
    text = "\n".join(line for line in text.splitlines() if "ENERGY|" not in line)
    with pytest.raises(Cp2kError) as info:
        cp2k.parse_output(text, 24)
    assert info.value.kind == "parse_error"


@pytest.mark.parametrize("cut", ["half", "before_end"])
def test_truncated_output(box_run, cut):
    _, _, text = box_run
    end = len(text) // 2 if cut == "half" else text.index(cp2k.END_MARKER) - 10
    with pytest.raises(Cp2kError) as info:
        cp2k.parse_output(text[:end], 24)
    assert info.value.kind == "truncated"


def test_scf_not_converged_with_diagonalisation(tmp_path):
    template = cp2k.load_template(DIAG_TEMPLATE)
    with pytest.raises(Cp2kError) as info:
        cp2k.run_cp2k(water_molecule(), template, tmp_path / "run", mpi="")
    assert info.value.kind == "scf_not_converged"
    assert "SCF run NOT converged" in info.value.message
    assert not list((tmp_path / "run").glob("*.wfn*"))  # scratch removed
    assert (tmp_path / "run" / "label.out").is_file()  # kept for diagnosis


def test_scf_not_converged_with_outer_loop(xtb, tmp_path):
    tree = {**xtb.tree}
    tree["+force_eval"] = [dict(xtb.tree["+force_eval"][0])]
    dft = tree["+force_eval"][0]["+dft"] = dict(xtb.tree["+force_eval"][0]["+dft"])
    dft["+scf"] = {**dft["+scf"], "max_scf": 2, "+outer_scf": {"max_scf": 1, "eps_scf": 1e-6}}
    template = dataclasses.replace(xtb, tree=tree)
    with pytest.raises(Cp2kError) as info:
        cp2k.run_cp2k(water_molecule(), template, tmp_path, mpi="")
    assert info.value.kind == "scf_not_converged"
    assert "FAILED to converge" in info.value.message


def test_cp2k_input_error_is_a_crash(xtb, tmp_path):
    text = cp2k.make_input(xtb, water_molecule()).replace("&XTB\n", "&XTB\n BOGUS_KEYWORD 1\n", 1)
    with pytest.raises(Cp2kError) as info:
        cp2k.run_input(text, 3, tmp_path, mpi="mpirun")
    assert info.value.kind == "crashed"
    assert "BOGUS_KEYWORD" in info.value.message
    text = (tmp_path / "label.out").read_text()
    with pytest.raises(Cp2kError, match="BOGUS_KEYWORD"):  # the banner itself says crashed
        cp2k.parse_output(text, 3)


def test_missing_basis_is_a_crash(tmp_path):
    pbe = cp2k.load_template(PBE)
    nitrogen = Atoms("N2", positions=[[3, 3, 2.45], [3, 3, 3.55]], cell=[6, 6, 6], pbc=True)
    with pytest.raises(Cp2kError) as info:
        cp2k.run_cp2k(nitrogen, pbe, tmp_path, mpi="")
    assert info.value.kind == "crashed"
    assert "<N>" in info.value.message


def test_exit_status_zero_without_output_is_a_crash(box_run, xtb, tmp_path):
    """Neither a zero exit status nor a stale label.out is trusted."""
    (tmp_path / "label.out").write_text(box_run[2])
    with pytest.raises(Cp2kError) as info:
        cp2k.run_cp2k(water_molecule(), xtb, tmp_path, command="true", mpi="")
    assert info.value.kind == "crashed"


def test_pbe_template_runs_on_one_water_molecule(tmp_path):
    pbe = cp2k.load_template(PBE)
    result = cp2k.run_cp2k(water_molecule(), pbe, tmp_path, mpi="")
    assert result["energy"] == pytest.approx(-468.56, abs=0.05)  # PBE-D3/DZVP-MOLOPT-SR, 400 Ry
    assert np.abs(result["forces"]).max() < 2.0
    assert result["stress"].shape == (6,)


# --------------------------------------------------------------------------
# isolated atoms
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "multiplicity"),
    [("H", 2), ("Li", 2), ("C", 3), ("N", 4), ("O", 3), ("F", 2), ("Na", 2), ("Mg", 1), ("Al", 2),
     ("Si", 3), ("P", 4), ("S", 3), ("Cl", 2), ("K", 2), ("Ca", 1), ("Cr", 7), ("Fe", 5), ("Cu", 2),
     ("Zn", 1), ("Pd", 1), ("Au", 2)],
)
def test_ground_state_multiplicity(symbol, multiplicity):
    # the values of the former Hund's-rule table (and of the elements the tests
    # and example configs use: H, O, Cu), unchanged with ASE's moments
    assert cp2k.ground_state_multiplicity(symbol) == multiplicity


# The former implementation (aufbau filling with the common exceptions, every
# open subshell at its maximal number of unpaired electrons), kept here as the
# reference that ASE's tabulated ground-state magnetic moments replaced.
_CONFIG_EXCEPTIONS = {
    "Cr": {"3d": 5, "4s": 1}, "Cu": {"3d": 10, "4s": 1}, "Nb": {"4d": 4, "5s": 1},
    "Mo": {"4d": 5, "5s": 1}, "Ru": {"4d": 7, "5s": 1}, "Rh": {"4d": 8, "5s": 1},
    "Pd": {"4d": 10, "5s": 0}, "Ag": {"4d": 10, "5s": 1}, "La": {"4f": 0, "5d": 1},
    "Gd": {"4f": 7, "5d": 1}, "Pt": {"5d": 9, "6s": 1}, "Au": {"5d": 10, "6s": 1},
}


def hund_multiplicity(symbol: str) -> int:
    subshells = sorted(((n, l) for n in range(1, 8) for l in range(min(n, 4))),
                       key=lambda s: (s[0] + s[1], s[0]))
    config, left = {}, atomic_numbers[symbol]
    for n, l in subshells:
        if left == 0:
            break
        config[f"{n}{'spdf'[l]}"] = occupation = min(left, 2 * (2 * l + 1))
        left -= occupation
    config.update(_CONFIG_EXCEPTIONS.get(symbol, {}))
    capacity = {subshell: 2 * (2 * "spdf".index(subshell[-1]) + 1) for subshell in config}
    return 1 + sum(min(occ, capacity[sub] - occ) for sub, occ in config.items())


def test_ground_state_multiplicity_agrees_with_hunds_rule_from_h_to_rn():
    # Ce differs: ASE's table has a doublet (one unpaired electron), the plain
    # aufbau filling 4f2 6s2 a triplet.
    for z in range(1, 87):
        symbol = chemical_symbols[z]
        if symbol != "Ce":
            assert cp2k.ground_state_multiplicity(symbol) == hund_multiplicity(symbol), symbol
    assert (cp2k.ground_state_multiplicity("Ce"), hund_multiplicity("Ce")) == (2, 3)
    with pytest.raises(ValueError, match="Lr"):  # no tabulated moment
        cp2k.ground_state_multiplicity("Lr")


@pytest.mark.parametrize(("symbol", "multiplicity", "energy"), [("H", 2, -10.9235), ("O", 3, -118.3430)])
def test_isolated_atom_energy_xtb(xtb, tmp_path, symbol, multiplicity, energy):
    e0 = cp2k.isolated_atom_energy(symbol, xtb, tmp_path, mpi="")
    assert e0 == pytest.approx(energy, abs=0.01)  # CP2K 2023.1 GFN1-xTB
    tree, parser = parse_input((tmp_path / "label.inp").read_text())
    dft = tree["+force_eval"][0]["+dft"]
    assert dft["uks"] is True and dft["multiplicity"] == multiplicity
    assert [c[0] for c in parser.coords()] == [symbol]


# --------------------------------------------------------------------------
# pre-flight checks and safer SCF settings
# --------------------------------------------------------------------------


def test_check_elements_names_what_a_basis_set_method_lacks(tmp_path):
    pbe = cp2k.load_template(PBE)
    assert cp2k.needs_basis(pbe) and cp2k.check_elements(pbe, ["H", "O"]) == []
    problems = cp2k.check_elements(pbe, ["H", "N", "O"])
    assert problems == ["element N: no &KIND N section with BASIS_SET and POTENTIAL "
                        "(method GPW needs both for every element)"]
    wrong = write_template(tmp_path, PBE.read_text().replace("GTH-PBE-q6", "GTH-PBE-q7"), "w.inp")
    assert cp2k.check_elements(wrong, ["H", "O"]) == [
        "element O: potential GTH-PBE-q7 is not in GTH_POTENTIALS"]
    nobasis = write_template(tmp_path, PBE.read_text().replace(
        "BASIS_SET DZVP-MOLOPT-SR-GTH\n      POTENTIAL GTH-PBE-q1", "POTENTIAL GTH-PBE-q1"), "b.inp")
    assert cp2k.check_elements(nobasis, ["H", "O"]) == ["element H: &KIND H has no BASIS_SET"]
    nofile = write_template(tmp_path, PBE.read_text().replace("BASIS_MOLOPT", "BASIS_NOPE"), "f.inp")
    assert cp2k.check_elements(nofile, ["H", "O"], data_dir=Path("/usr/share/cp2k"))[0].startswith(
        "BASIS_SET_FILE_NAME BASIS_NOPE: no such file")
    # a basis file next to the template is found there
    (tmp_path / "MY_BASIS").write_text("H  MINE\n 1\n 1 0 0 1 1\n 1.0 1.0\nO MINE\n")
    local = write_template(tmp_path, PBE.read_text().replace("BASIS_MOLOPT", "MY_BASIS")
                           .replace("DZVP-MOLOPT-SR-GTH", "MINE"), "l.inp")
    assert cp2k.check_elements(local, ["H", "O"]) == []


def test_check_elements_no_false_alarm_for_xtb(xtb):
    assert not cp2k.needs_basis(xtb)
    assert cp2k.check_elements(xtb, ["H", "O", "N", "Fe"]) == []


def test_safer_scf_settings(xtb, tmp_path):
    safer, changes = cp2k.safer_scf(xtb)
    scf = safer.tree["+force_eval"][0]["+dft"]["+scf"]
    assert scf["max_scf"] == 50 and scf["+outer_scf"]["max_scf"] == 40
    assert scf["+ot"]["minimizer"] == "cg" and "MAX_SCF 10 -> 50" in changes
    assert xtb.tree["+force_eval"][0]["+dft"]["+scf"]["max_scf"] == 10  # the original is kept
    diag = cp2k.load_template(DIAG_TEMPLATE)
    safer, changes = cp2k.safer_scf(diag)
    scf = safer.tree["+force_eval"][0]["+dft"]["+scf"]
    assert scf["max_scf"] == 100 and scf["+mixing"]["alpha"] == pytest.approx(0.2)
    assert changes == "MAX_SCF 2 -> 100, MIXING/ALPHA 0.4 -> 0.2"
    cp2k.make_input(safer, water_molecule())  # still valid CP2K input


def test_time_limit_stops_cp2k_gracefully_as_timeout(xtb, tmp_path):
    big = water_box(n=4)  # 192 atoms: far longer than the limit
    with pytest.raises(Cp2kError) as info:
        cp2k.run_cp2k(big, xtb, tmp_path, mpi="", timeout=1.5)
    assert info.value.kind == "timeout" and "1.5 s" in info.value.message
    assert "stopped itself" in info.value.message
    assert "WALLTIME 1.5" in (tmp_path / "label.inp").read_text()
    out = (tmp_path / "label.out").read_text()  # CP2K ended the run itself: no kill
    assert "exceeded requested execution time" in out and out.rstrip().splitlines()[-1].strip()
    assert "PROGRAM ENDED AT" in out


def test_time_limit_terminates_a_run_that_ignores_it(tmp_path, monkeypatch):
    """A launcher that never looks at WALLTIME (a stand-in for a hung MPI
    job: Python sleeping) is terminated past the limit plus the margin."""
    from alflow.cp2k import runner

    monkeypatch.setattr(runner, "kill_after", lambda timeout: timeout + 0.5)
    sleeper = f"{sys.executable} -c 'import time; time.sleep(120)'"
    t0 = time.monotonic()
    with pytest.raises(Cp2kError) as info:
        runner.run_input("&GLOBAL\n&END GLOBAL\n", 1, tmp_path, command=sleeper, mpi="",
                         timeout=0.5)
    assert info.value.kind == "timeout" and "terminated" in info.value.message
    assert time.monotonic() - t0 < 30  # SIGTERM ended it, no 120 s sleep


def test_walltime_goes_into_the_global_section():
    from alflow.cp2k.runner import kill_after, with_walltime

    text = "&GLOBAL\n  PROJECT label\n&END GLOBAL\n&FORCE_EVAL\n&END FORCE_EVAL\n"
    assert with_walltime(text, 90).splitlines()[:2] == ["&GLOBAL", "  WALLTIME 90"]
    own = "&GLOBAL\n  WALLTIME 10\n&END GLOBAL\n"
    assert with_walltime(own, 90) == own  # the template's own WALLTIME is kept
    assert kill_after(1.5) == 11.5 and kill_after(1200) == 1320 and kill_after(1e5) == 1e5 + 300
