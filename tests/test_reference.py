"""alflow.reference and alflow.labelling: ASE (EMT) and CP2K (GFN1-xTB) references,
chunk labelling, caches, resume."""
from __future__ import annotations

import os
import re

import shutil
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from alflow import ENERGY_KEY, FAILURE_KEY, FORCES_KEY, RETRY_KEY, STRESS_KEY
from alflow.labelling import (
    RelabelRefused,
    SystematicFailure,
    isolated_atom_cached,
    label_chunk,
    structure_hash,
    unpaid_structures,
)
from alflow.reference import AseReference, Cp2kReference, LabelFailure, make_reference

REPO = Path(__file__).resolve().parent.parent
XTB = REPO / "config" / "cp2k" / "water_xtb.inp"
EMT_CFG = {"kind": "ase", "e0s": "auto", "ase": {"calculator": "ase.calculators.emt.EMT", "kwargs": {}}}
needs_cp2k = pytest.mark.skipif(shutil.which("cp2k") is None, reason="needs the cp2k binary")


class CountingEMT(EMT):
    """EMT that counts its calculations (to see what a rerun recomputes)."""

    calls = 0

    def calculate(self, *args, **kwargs):
        type(self).calls += 1
        super().calculate(*args, **kwargs)


def cu_cell(seed: int = 0) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.05, seed=seed)
    atoms.info["origin"] = f"test:{seed}"
    return atoms


def overlapping_cu() -> Atoms:
    atoms = cu_cell()
    atoms.positions[1] = atoms.positions[0]  # EMT gives NaN forces
    return atoms


def water(box: float = 6.0, seed: int = 0) -> Atoms:
    atoms = molecule("H2O", cell=[box] * 3, pbc=True)
    atoms.center()
    atoms.rattle(0.02, seed=seed)
    atoms.info["origin"] = f"water:{seed}"
    return atoms


def collapsed_water() -> Atoms:
    atoms = water()
    atoms.positions[1] = atoms.positions[0] + [0.0, 0.0, 0.001]  # CP2K aborts on this geometry
    return atoms


def read(path: Path) -> list[Atoms]:
    return [] if path.stat().st_size == 0 else ase.io.read(path, index=":")


# --------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------


def test_ase_reference_matches_emt(tmp_path):
    ref = make_reference(EMT_CFG)
    atoms = cu_cell()
    labelled = ref.label(atoms, tmp_path)
    direct = atoms.copy()
    direct.calc = EMT()
    assert labelled.info[ENERGY_KEY] == pytest.approx(direct.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(labelled.arrays[FORCES_KEY], direct.get_forces(), atol=1e-10)
    np.testing.assert_allclose(labelled.info[STRESS_KEY], direct.get_stress(voigt=True), atol=1e-10)
    assert labelled.info["origin"] == "test:0"
    assert labelled.calc is None
    assert "origin" in atoms.info and ENERGY_KEY not in atoms.info  # input untouched


def test_ase_reference_gives_no_stress_without_3d_periodicity(tmp_path):
    atoms = cu_cell()
    atoms.pbc = [True, True, False]
    labelled = make_reference(EMT_CFG).label(atoms, tmp_path)
    assert STRESS_KEY not in labelled.info and ENERGY_KEY in labelled.info


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # EMT on overlapping atoms
@pytest.mark.parametrize(
    ("atoms", "kind", "text"),
    [(overlapping_cu(), "non_finite", "non-finite"), (bulk("Si"), "calculator_error", "No EMT-potential for Si")],
)
def test_ase_reference_failures(tmp_path, atoms, kind, text):
    with pytest.raises(LabelFailure) as info:
        make_reference(EMT_CFG).label(atoms, tmp_path)
    assert info.value.kind == kind and text in info.value.message


def test_ase_isolated_atom_energy(tmp_path):
    atom = Atoms("Cu", calculator=EMT())
    assert make_reference(EMT_CFG).isolated_atom_energy("Cu", tmp_path) == pytest.approx(atom.get_potential_energy())


def test_make_reference_resource_overrides():
    cfg = {"kind": "cp2k", "cp2k": {"template": str(XTB), "command": "cp2k.psmp", "mpi": "srun", "tasks": 4}}
    ref = make_reference(cfg)
    assert isinstance(ref, Cp2kReference)
    assert ref.run_kwargs == {"command": "cp2k.psmp", "mpi": "srun", "tasks": 4, "cpus_per_task": 1,
                              "timeout": None, "concurrent": 1}
    ref = make_reference(cfg, mpi="", tasks=2, cpus_per_task=3, concurrent=2)
    assert ref.run_kwargs["mpi"] == "" and ref.run_kwargs["tasks"] == 2 and ref.run_kwargs["cpus_per_task"] == 3
    assert ref.concurrent == 2 and "2 structures at once" in ref.describe()
    assert make_reference(EMT_CFG, concurrent=2).concurrent == 1  # an ASE calculator: one at a time
    assert make_reference({"kind": "cp2k", "cp2k": {"template": str(XTB)}}).run_kwargs["mpi"] == "mpirun"
    assert isinstance(make_reference(EMT_CFG), AseReference)
    with pytest.raises(ValueError, match="vasp"):
        make_reference({"kind": "vasp"})


# --------------------------------------------------------------------------
# chunks
# --------------------------------------------------------------------------


def test_label_chunk_empty_input(tmp_path):
    (tmp_path / "in.xyz").write_text("")
    counts = label_chunk(tmp_path / "in.xyz", tmp_path / "out.xyz", tmp_path / "failed.xyz",
                         make_reference(EMT_CFG), tmp_path / "work")
    assert counts == {"n_input": 0, "n_labelled": 0, "n_failed": 0, "failures": {}}
    assert (tmp_path / "out.xyz").read_text() == "" and (tmp_path / "failed.xyz").read_text() == ""


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # EMT on overlapping atoms
def test_label_chunk_ase_mix_and_resume(tmp_path):
    frames = [cu_cell(0), overlapping_cu(), bulk("Si", cubic=True), cu_cell(1)]
    ase.io.write(tmp_path / "in.xyz", frames)
    ref = AseReference(CountingEMT)
    paths = (tmp_path / "in.xyz", tmp_path / "out.xyz", tmp_path / "failed.xyz")

    CountingEMT.calls = 0
    counts = label_chunk(*paths, ref, tmp_path / "work")
    assert counts == {"n_input": 4, "n_labelled": 2, "n_failed": 2,
                      "failures": {"non_finite": 1, "calculator_error": 1}}
    first_calls = CountingEMT.calls
    out, failed = read(paths[1]), read(paths[2])
    assert [a.info["origin"] for a in out] == ["test:0", "test:1"]
    assert all(ENERGY_KEY in a.info and FORCES_KEY in a.arrays and STRESS_KEY in a.info for a in out)
    assert [a.info[FAILURE_KEY].split(":")[0] for a in failed] == ["non_finite", "calculator_error"]
    assert "No EMT-potential for Si" in failed[1].info[FAILURE_KEY]
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries

    # Rerun: the two successes come from the cache, only the failures run again.
    CountingEMT.calls = 0
    assert label_chunk(*paths, ref, tmp_path / "work") == counts
    assert 0 < CountingEMT.calls < first_calls
    again = read(paths[1])
    np.testing.assert_array_equal(again[0].arrays[FORCES_KEY], out[0].arrays[FORCES_KEY])
    assert again[0].info["origin"] == "test:0"

    # A changed structure (or different reference settings) would cost new
    # labels in a finished chunk: refused, unless relabelling is allowed.
    frames[0].positions[0, 0] += 0.01
    ase.io.write(paths[0], frames)
    CountingEMT.calls = 0
    with pytest.raises(RelabelRefused, match="1 new reference calculation.*ALFLOW_RELABEL=1"):
        label_chunk(*paths, ref, tmp_path / "work")
    assert CountingEMT.calls == 0 and read(paths[1])[0].info["origin"] == "test:0"
    label_chunk(*paths, ref, tmp_path / "work", allow_relabel=True)
    calls_moved = CountingEMT.calls
    CountingEMT.calls = 0
    label_chunk(*paths, AseReference(CountingEMT, {"asap_cutoff": True}), tmp_path / "work",
                allow_relabel=True)
    assert CountingEMT.calls > calls_moved


def test_label_cache_is_shared_by_chunks_and_keyed_by_level_of_theory(tmp_path, monkeypatch):
    """A structure labelled in one chunk is never computed again: not in
    another chunk (a changed chunk_size), not with another CP2K binary or
    launcher; another level of theory is another key."""
    frames = [cu_cell(0), cu_cell(1), cu_cell(2)]
    ase.io.write(tmp_path / "a.xyz", frames[:2])
    ase.io.write(tmp_path / "b.xyz", frames[::-1])
    cache = tmp_path / "cache"
    ref = AseReference(CountingEMT)
    CountingEMT.calls = 0
    label_chunk(tmp_path / "a.xyz", tmp_path / "a_out.xyz", tmp_path / "a_failed.xyz", ref,
                tmp_path / "work_a", cache=cache)
    assert CountingEMT.calls == 2 and len(list(cache.glob("*/*.extxyz"))) == 2
    CountingEMT.calls = 0
    label_chunk(tmp_path / "b.xyz", tmp_path / "b_out.xyz", tmp_path / "b_failed.xyz", ref,
                tmp_path / "work_b", cache=cache)
    assert CountingEMT.calls == 1  # only the third structure is new
    a, b = read(tmp_path / "a_out.xyz"), read(tmp_path / "b_out.xyz")
    np.testing.assert_array_equal(b[2].arrays[FORCES_KEY], a[0].arrays[FORCES_KEY])
    # a finished chunk rerun with other structures that are all cached costs
    # nothing, so it is not refused
    ase.io.write(tmp_path / "a.xyz", frames[1:])
    label_chunk(tmp_path / "a.xyz", tmp_path / "a_out.xyz", tmp_path / "a_failed.xyz", ref,
                tmp_path / "work_a", cache=cache)
    # what a new selection for this finished stage would cost
    assert unpaid_structures(frames[1:], tmp_path) == 0
    assert unpaid_structures(frames + [cu_cell(5)], tmp_path) == 1
    assert unpaid_structures(frames, tmp_path / "never_labelled") == 0
    # the ALFLOW_RELABEL environment variable allows a paid relabel
    ase.io.write(tmp_path / "a.xyz", [cu_cell(3)])
    monkeypatch.setenv("ALFLOW_RELABEL", "1")
    label_chunk(tmp_path / "a.xyz", tmp_path / "a_out.xyz", tmp_path / "a_failed.xyz", ref,
                tmp_path / "work_a", cache=cache)
    # the binary, launcher and time limit are not part of the key; the template is
    x1 = make_reference({"kind": "cp2k", "cp2k": {"template": str(XTB), "command": "cp2k"}})
    x2 = make_reference({"kind": "cp2k", "time_limit": "5m",
                         "cp2k": {"template": str(XTB), "command": "cp2k.psmp"}},
                        mpi="srun --exact", tasks=64, cpus_per_task=2)
    assert structure_hash(frames[0], x1) == structure_hash(frames[0], x2)
    other = tmp_path / "other.inp"
    other.write_text(XTB.read_text().replace("EPS_SCF 1.0E-6", "EPS_SCF 1.0E-7", 1))
    x3 = make_reference({"kind": "cp2k", "cp2k": {"template": str(other)}})
    assert structure_hash(frames[0], x3) != structure_hash(frames[0], x1)
    # isolated atoms are cached too
    CountingEMT.calls = 0
    e1 = isolated_atom_cached(ref, "Cu", tmp_path / "atom1", cache)
    e2 = isolated_atom_cached(ref, "Cu", tmp_path / "atom2", cache)
    assert e1 == e2 and CountingEMT.calls == 1


@pytest.fixture(scope="module")
def xtb_reference():
    return make_reference({"kind": "cp2k", "cp2k": {"template": str(XTB)}}, mpi="", tasks=1, cpus_per_task=1)


def mtimes(workdir: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in sorted(workdir.glob("struct_*/label.out"))}


@needs_cp2k
def test_label_chunk_cp2k_failures_and_resume(tmp_path, xtb_reference):
    frames = [water(seed=0), collapsed_water(), water(seed=1)]
    ase.io.write(tmp_path / "in.xyz", frames)
    paths = (tmp_path / "in.xyz", tmp_path / "out.xyz", tmp_path / "failed.xyz")
    work = tmp_path / "work"

    counts = label_chunk(*paths, xtb_reference, work)
    assert counts == {"n_input": 3, "n_labelled": 2, "n_failed": 1, "failures": {"crashed": 1}}
    out, failed = read(paths[1]), read(paths[2])
    assert [a.info["origin"] for a in out] == ["water:0", "water:1"]
    for atoms in out:
        assert np.isfinite(atoms.info[ENERGY_KEY]) and atoms.arrays[FORCES_KEY].shape == (3, 3)
        assert atoms.info[STRESS_KEY].shape == (6,)
    assert failed[0].info[FAILURE_KEY].startswith("crashed: ")
    assert "\n" not in failed[0].info[FAILURE_KEY]
    np.testing.assert_allclose(failed[0].positions, frames[1].positions)
    assert (work / "struct_0001" / "label.out").is_file()  # kept for diagnosis
    first = mtimes(work)

    # A rerun does not recompute finished structures (only the failed one).
    assert label_chunk(*paths, xtb_reference, work) == counts
    second = mtimes(work)
    assert second["struct_0000"] == first["struct_0000"] and second["struct_0002"] == first["struct_0002"]
    assert second["struct_0001"] != first["struct_0001"]

    # A job killed before structure 2 finished: only that one is computed.
    (work / "struct_0002" / "result.sha256").unlink()
    label_chunk(*paths, xtb_reference, work)
    third = mtimes(work)
    assert third["struct_0000"] == first["struct_0000"] and third["struct_0002"] != first["struct_0002"]
    np.testing.assert_allclose(read(paths[1])[1].info[ENERGY_KEY], out[1].info[ENERGY_KEY], rtol=0, atol=1e-8)


@needs_cp2k
def test_cp2k_reference_isolated_atom(tmp_path, xtb_reference):
    assert xtb_reference.isolated_atom_energy("H", tmp_path) == pytest.approx(-10.9235, abs=0.01)


# --------------------------------------------------------------------------
# failures that surface early and runs that recover
# --------------------------------------------------------------------------

DIAG_XTB = (REPO / "tests" / "data" / "xtb_diag_max_scf_2.inp").read_text()  # MAX_SCF 2


@needs_cp2k
def test_scf_retry_rescues_a_too_small_max_scf(tmp_path):
    path = tmp_path / "diag.inp"
    path.write_text(DIAG_XTB)
    cfg = {"kind": "cp2k", "cp2k": {"template": str(path), "mpi": ""}}
    labelled = make_reference(cfg).label(water(), tmp_path / "a")
    assert labelled.info[RETRY_KEY] == "scf retried (MAX_SCF 2 -> 100, MIXING/ALPHA 0.4 -> 0.2)"
    assert (tmp_path / "a" / "label.out").is_file()  # the failed first run stays for diagnosis
    assert "SCF run NOT converged" in (tmp_path / "a" / "label.out").read_text()
    # the same structure with a template that converges at once gives the same labels
    path.write_text(DIAG_XTB.replace("MAX_SCF 2", "MAX_SCF 100"))
    direct = make_reference(cfg).label(water(), tmp_path / "b")
    assert RETRY_KEY not in direct.info and not (tmp_path / "b" / "scf_retry").exists()
    np.testing.assert_allclose(labelled.arrays[FORCES_KEY], direct.arrays[FORCES_KEY], atol=1e-5)
    # retry switched off: the structure fails as before
    path.write_text(DIAG_XTB)
    with pytest.raises(LabelFailure) as info:
        make_reference({**cfg, "cp2k": {**cfg["cp2k"], "scf_retry": False}}).label(
            water(), tmp_path / "c")
    assert info.value.kind == "scf_not_converged"
    # the retry is kept when the label is read back from the cache of a rerun
    ase.io.write(tmp_path / "in.xyz", [water(seed=0), water(seed=1)])
    paths = (tmp_path / "in.xyz", tmp_path / "out.xyz", tmp_path / "failed.xyz")
    for _ in range(2):
        label_chunk(*paths, make_reference(cfg), tmp_path / "chunk")
        assert all(RETRY_KEY in a.info for a in read(paths[1]))


@needs_cp2k
def test_a_chunk_whose_every_structure_fails_alike_fails(tmp_path):
    pbe = {"kind": "cp2k", "cp2k": {"template": str(REPO / "config" / "cp2k" / "water_pbe.inp"),
                                     "mpi": ""}}
    nitrogen = [Atoms("N2", positions=[[3, 3, 2.45 + d], [3, 3, 3.55]], cell=[6, 6, 6], pbc=True)
                for d in (0.0, 0.05)]
    ase.io.write(tmp_path / "in.xyz", nitrogen)
    paths = (tmp_path / "in.xyz", tmp_path / "out.xyz", tmp_path / "failed.xyz")
    with pytest.raises(SystematicFailure) as info:
        label_chunk(*paths, make_reference(pbe), tmp_path / "work")
    message = str(info.value)
    assert "all 2 structures" in message and "<N>" in message and "crashed" in message
    assert not paths[1].exists()  # no output pretends the chunk worked
    # one good structure among them: the failures are the structures' own
    ase.io.write(tmp_path / "in.xyz", nitrogen + [water()])
    counts = label_chunk(*paths, make_reference(pbe), tmp_path / "work")
    assert counts["n_labelled"] == 1 and counts["n_failed"] == 2


@needs_cp2k
def test_time_limit_per_structure_fails_only_that_structure(tmp_path):
    big = molecule("H2O")
    waters = Atoms(cell=[12.4] * 3, pbc=True)
    rng = np.random.default_rng(0)
    for idx in np.ndindex(4, 4, 4):  # 192 atoms: far longer than the limit
        mol = big.copy()
        mol.rotate(rng.uniform(0, 360), rng.normal(size=3), center="COM")
        mol.translate((np.array(idx) + 0.5) * 3.1 - mol.get_center_of_mass())
        waters += mol
    ase.io.write(tmp_path / "in.xyz", [water(), waters])
    paths = (tmp_path / "in.xyz", tmp_path / "out.xyz", tmp_path / "failed.xyz")
    cfg = {"kind": "cp2k", "time_limit": "4s", "cp2k": {"template": str(XTB), "mpi": ""}}
    counts = label_chunk(*paths, make_reference(cfg), tmp_path / "work")
    assert counts["n_labelled"] == 1 and counts["failures"] == {"timeout": 1}
    assert read(paths[2])[0].info[FAILURE_KEY].startswith("timeout: exceeded the per-structure "
                                                          "time limit of 4 s")


# --------------------------------------------------------------------------
# a chunk's SCFs start from the previous structure's wavefunction
# --------------------------------------------------------------------------


def walker_frames(n: int) -> list[Atoms]:
    """Water frames as a walker leaves them: close to one another, given out
    of MD order (as the selection does)."""
    frames = []
    for k in range(4):
        atoms = water(seed=0)
        atoms.positions += 0.01 * k * np.array([[0.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.5]])
        atoms.info.update(walker=0, step=5 * k, origin=f"walker:{k}")
        frames.append(atoms)
    return [frames[k] for k in (2, 0, 3, 1)][:n]


@needs_cp2k
def test_chunk_reuses_wavefunctions_and_matches_singlepoints(tmp_path):
    from alflow.cp2k import scf_steps

    frames = walker_frames(4)
    ase.io.write(tmp_path / "in.xyz", frames)
    out = {}
    for name, guess, concurrent in (("plain", False, 1), ("chain", True, 1), ("streams", True, 2)):
        ref = make_reference({"kind": "cp2k", "cp2k": {"template": str(XTB), "mpi": "",
                                                       "wfn_guess": guess}}, concurrent=concurrent)
        counts = label_chunk(tmp_path / "in.xyz", tmp_path / f"{name}.xyz",
                             tmp_path / f"{name}_failed.xyz", ref, tmp_path / name)
        assert counts["n_labelled"] == 4
        out[name] = read(tmp_path / f"{name}.xyz")
    for name in ("chain", "streams"):  # same order as the input, same labels
        for a, b in zip(out["plain"], out[name]):
            assert a.info["origin"] == b.info["origin"]
            assert abs(a.info[ENERGY_KEY] - b.info[ENERGY_KEY]) < 1e-5
            assert np.abs(a.arrays[FORCES_KEY] - b.arrays[FORCES_KEY]).max() < 1e-4
    # walker order: step 0 (input 1) first, from the template's guess; then
    # each from the one before, with fewer SCF steps
    first = (tmp_path / "chain" / "struct_0001" / "label.inp").read_text().upper()
    assert "SCF_GUESS RESTART" not in first and "WFN_RESTART_FILE_NAME" not in first
    later = (tmp_path / "chain" / "struct_0003" / "label.inp").read_text()
    assert "SCF_GUESS RESTART" in later.upper()
    assert str(tmp_path / "chain" / "struct_0001" / "wfn.guess") in later
    steps = {name: [scf_steps((tmp_path / name / f"struct_{k:04d}" / "label.out").read_text())
                    for k in range(4)] for name in out}
    assert sum(steps["chain"]) < sum(steps["plain"]), steps
    assert not list((tmp_path / "chain").glob("struct_*/wfn.guess"))  # scratch removed
    # two streams side by side: steps 0, 5 (inputs 1, 3) and steps 10, 15
    # (inputs 0, 2), each structure from the previous one of its stream
    streams = tmp_path / "streams"
    for first, then in ((1, 3), (0, 2)):
        assert "WFN_RESTART_FILE_NAME" not in \
            (streams / f"struct_{first:04d}" / "label.inp").read_text().upper()
        assert str(streams / f"struct_{first:04d}" / "wfn.guess") in \
            (streams / f"struct_{then:04d}" / "label.inp").read_text()
    span = {k: program_span((streams / f"struct_{k:04d}" / "label.out").read_text()) for k in (0, 1)}
    assert span[0][0] <= span[1][1] and span[1][0] <= span[0][1], span  # they overlapped


def program_span(output: str) -> tuple[str, str]:
    """When CP2K started and ended (its own timestamps, sortable as text)."""
    started = re.search(r"PROGRAM STARTED AT\s+(\S+ \S+)", output).group(1)
    ended = re.search(r"PROGRAM ENDED AT\s+(\S+ \S+)", output).group(1)
    return started, ended


@needs_cp2k
def test_a_structure_whose_guess_fails_is_rescued_by_its_own_singlepoint(tmp_path):
    atoms = walker_frames(1)[0]
    bad = tmp_path / "broken.wfn"
    bad.write_bytes(b"not a wavefunction" * 10)
    ref = make_reference({"kind": "cp2k", "cp2k": {"template": str(XTB), "mpi": ""}})
    rescued = ref.label(atoms, tmp_path / "rescued", guess=bad)
    plain = make_reference({"kind": "cp2k", "cp2k": {"template": str(XTB), "mpi": "",
                                                     "wfn_guess": False}}).label(
        atoms, tmp_path / "plain")
    assert abs(rescued.info[ENERGY_KEY] - plain.info[ENERGY_KEY]) < 1e-5
    assert (tmp_path / "rescued" / "from_guess.out").exists()  # the failed try, for diagnosis
    assert (tmp_path / "rescued" / "wfn.guess").exists()  # its own, for the next structure


def test_split_streams_keeps_neighbours_together():
    from alflow.labelling import split_streams

    assert split_streams([4, 2, 0, 1, 3], 2) == [[4, 2, 0], [1, 3]]
    assert split_streams([4, 2, 0, 1, 3], 1) == [[4, 2, 0, 1, 3]]
    assert split_streams([1, 0], 4) == [[1], [0]]
    assert split_streams([], 3) == []
    assert [len(s) for s in split_streams(list(range(10)), 4)] == [3, 3, 2, 2]


HANGING_RUN = '''
import sys
from alflow.cp2k import exit_on_sigterm
from alflow.labelling import label_chunk
from alflow.reference import make_reference

exit_on_sigterm()
ref = make_reference({"kind": "cp2k", "cp2k": {"template": sys.argv[1], "mpi": "",
                      "command": "bash -c 'sleep 300'"}}, concurrent=2)
label_chunk(sys.argv[2] + "/in.xyz", sys.argv[2] + "/out.xyz", sys.argv[2] + "/failed.xyz", ref,
            sys.argv[2] + "/work")
'''


ONE_HANGING_RUN = '''
import sys
import threading
from alflow.cp2k import exit_on_sigterm
from alflow.cp2k.runner import run_input

exit_on_sigterm()
threading.Thread(target=threading.Event().wait, daemon=True).start()  # a thread besides main
run_input("&GLOBAL\\n&END GLOBAL\\n", 1, sys.argv[1], command="bash -c 'sleep 300'", mpi="")
'''


def send_sigterm(pid: int, to: str) -> None:
    """SIGTERM to the process ``pid``, or (``to`` = "another thread") to one of
    its threads other than the main one: the kernel hands a signal sent to the
    process to any of its threads, and ``kill`` of a thread's id hands it to
    that thread first, which pins the case (seen in CI) where the main thread
    does not receive it."""
    import signal

    others = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    os.kill(pid if to == "process" else others[-1], signal.SIGTERM)


def processes_in(directory: Path) -> list[int]:
    """Processes whose working directory is under ``directory``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")).is_relative_to(directory):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.parametrize("to", ["process", "another thread"])
def test_a_cancelled_job_stops_every_structure_running_side_by_side(tmp_path, to):
    """A label job cancelled (SIGTERM) while two structures run at once stops
    both runs and starts no other, and writes no chunk output. The runs
    stand in for a CP2K that hangs (`bash -c 'sleep 300'` as the command:
    this is about processes, not CP2K), the signal sent as :func:`send_sigterm`."""
    import signal
    import subprocess
    import sys
    import time

    ase.io.write(tmp_path / "in.xyz", walker_frames(4))
    proc = subprocess.Popen([sys.executable, "-c", HANGING_RUN, str(XTB), str(tmp_path)])
    deadline = time.monotonic() + 60
    while len(processes_in(tmp_path / "work")) < 2:  # both streams' first structures
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    started = time.monotonic()
    send_sigterm(proc.pid, to)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 30  # not the 300 s of the runs
    assert processes_in(tmp_path / "work") == []
    assert len(list((tmp_path / "work").glob("struct_*/label.inp"))) == 2  # nothing else started
    assert not (tmp_path / "out.xyz").exists() and not (tmp_path / "failed.xyz").exists()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_a_cancelled_single_run_stops_whichever_thread_gets_the_signal(tmp_path):
    """One CP2K run waited for in the main thread (the isolated atoms, the
    reference MD) stops on SIGTERM even when the kernel hands the signal to
    another thread of the job (:func:`send_sigterm`). The run stands in for
    a CP2K that hangs (`bash -c 'sleep 300'`)."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", ONE_HANGING_RUN, str(tmp_path)])
    deadline = time.monotonic() + 60
    while not processes_in(tmp_path):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    started = time.monotonic()
    send_sigterm(proc.pid, "another thread")
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 30  # not the 300 s of the run
    assert processes_in(tmp_path) == []
