"""alflow.refmd: a held-out test set from MD with the reference itself
(ASE EMT on Cu; the real CP2K binary with GFN1-xTB on water)."""
from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.io import read

from conftest import rms_displacement

from alflow.cp2k import Cp2kError, load_template
from alflow.refmd import FRAMES_NAME, cp2k_md_frames, reference_md_frames

REPO = Path(__file__).resolve().parent.parent
CU = REPO / "tests" / "data" / "cu_16.xyz"
WATER = REPO / "config" / "structures" / "water_8.xyz"
XTB = REPO / "config" / "cp2k" / "water_xtb.inp"
PBE = REPO / "config" / "cp2k" / "water_pbe.inp"
needs_cp2k = pytest.mark.skipif(shutil.which("cp2k") is None, reason="needs the cp2k binary")

ASE_MD = {"timestep_fs": 2.0, "equilibration_steps": 50, "interval_steps": 10, "friction": 0.02}
CP2K_MD = {"timestep_fs": 0.5, "equilibration_steps": 4, "interval_steps": 2}


# --------------------------------------------------------------------------
# ASE
# --------------------------------------------------------------------------


def test_reference_md_frames_with_ase_tags_origins_and_reuses_finished_runs(tmp_path, caplog):
    cfg = {"kind": "ase", "ase": {"calculator": "ase.calculators.emt.EMT", "kwargs": {}}}
    cu = read(CU)
    strained = cu.copy()
    strained.set_cell(cu.cell * 1.02, scale_atoms=True)
    kwargs = dict(**ASE_MD, seed=11, workdir=tmp_path / "md")
    frames = reference_md_frames(cfg, [cu, strained], [300, 900], 5, **kwargs)
    assert len(frames) == 5
    # plan: (300, s0) 2 frames, (900, s0) 1, (300, s1) 1, (900, s1) 1
    temps = [f.info["temperature"] for f in frames]
    assert temps == [300.0, 300.0, 900.0, 300.0, 900.0]
    assert [f.info["origin"] for f in frames] == [f"test_md:{t:g}K:{k}" for k, t in enumerate(temps)]
    assert np.allclose(frames[-1].cell, strained.cell) and np.allclose(frames[0].cell, cu.cell)
    assert len({f.positions.tobytes() for f in frames}) == 5
    # a rerun reuses the stored frames of every run
    runs = sorted((tmp_path / "md").glob(f"run_*/{FRAMES_NAME}"))
    assert len(runs) == 4
    stamps = [p.stat().st_mtime_ns for p in runs]
    with caplog.at_level(logging.INFO, logger="alflow"):
        again = reference_md_frames(cfg, [cu, strained], [300, 900], 5, **kwargs)
    assert [p.stat().st_mtime_ns for p in runs] == stamps
    assert caplog.text.count("(reused)") == 4
    assert [f.info["origin"] for f in again] == [f.info["origin"] for f in frames]
    assert all(np.allclose(a.positions, b.positions, atol=1e-7) for a, b in zip(frames, again))
    # other settings: computed again
    changed = reference_md_frames(cfg, [cu, strained], [300, 900], 5, **{**kwargs, "seed": 12})
    assert rms_displacement(changed[0], frames[0]) > 0.01


# --------------------------------------------------------------------------
# CP2K
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xtb():
    return load_template(XTB)


@needs_cp2k
def test_cp2k_xtb_md_frames_of_the_water_box(xtb, tmp_path):
    water = read(WATER)
    frames = cp2k_md_frames(water, xtb, 600, 3, **CP2K_MD, seed=5, workdir=tmp_path, mpi="")
    assert len(frames) == 3
    assert [f.info["origin"] for f in frames] == ["md:600K:6", "md:600K:8", "md:600K:10"]
    for frame in frames:
        assert len(frame) == 24 and np.array_equal(frame.numbers, water.numbers)
        assert np.allclose(frame.cell, water.cell) and frame.pbc.all()
        assert np.all(np.isfinite(frame.positions)) and frame.calc is None
        assert set(frame.info) == {"origin", "temperature"} and frame.info["temperature"] == 600.0
        assert 0.005 < rms_displacement(frame, water) < 0.5
    for a, b in zip(frames, frames[1:]):
        assert rms_displacement(a, b) > 0.005
    text = (tmp_path / "label.inp").read_text()
    for line in ("RUN_TYPE MD", "METHOD XTB", "DO_EWALD .TRUE.", "ENSEMBLE NVT", "TYPE CSVR",
                 "TEMPERATURE 600.0", "TIMESTEP 0.5", "STEPS 10", "SEED 5", "MD 2"):
        assert line in text, line
    assert not list(tmp_path.glob("*.restart*")) and not list(tmp_path.glob("*.wfn*"))


@needs_cp2k
def test_reference_md_frames_with_cp2k(tmp_path):
    cfg = {"kind": "cp2k", "cp2k": {"template": str(XTB), "command": "cp2k"}}
    frames = reference_md_frames(cfg, [read(WATER)], [300, 600], 2, **CP2K_MD, friction=0.02,
                                 seed=7, workdir=tmp_path, mpi="", tasks=1, cpus_per_task=1)
    assert [f.info["origin"] for f in frames] == ["test_md:300K:0", "test_md:600K:1"]
    assert "SEED 8" in (tmp_path / "run_001" / "label.inp").read_text()  # seed + run index
    assert "TEMPERATURE 600.0" in (tmp_path / "run_001" / "label.inp").read_text()


@needs_cp2k
def test_cp2k_md_keeps_frames_when_some_scf_steps_do_not_converge(xtb, tmp_path, caplog):
    tree = {**xtb.tree}
    tree["+force_eval"] = [dict(xtb.tree["+force_eval"][0])]
    dft = tree["+force_eval"][0]["+dft"] = dict(xtb.tree["+force_eval"][0]["+dft"])
    dft["+scf"] = {**dft["+scf"], "max_scf": 2, "+outer_scf": {"max_scf": 1, "eps_scf": 1e-6}}
    template = dataclasses.replace(xtb, tree=tree)
    water = molecule("H2O", cell=[6.0] * 3, pbc=True)
    water.center()
    with caplog.at_level(logging.WARNING, logger="alflow"):
        frames = cp2k_md_frames(water, template, 300, 2, **CP2K_MD, seed=1, workdir=tmp_path, mpi="")
    assert len(frames) == 2
    assert "SCF not converged" in caplog.text and str(tmp_path) in caplog.text


@needs_cp2k
def test_cp2k_md_failure_names_the_workdir_and_the_problem(tmp_path):
    pbe = load_template(PBE)  # no basis set for N
    nitrogen = Atoms("N2", positions=[[3, 3, 2.45], [3, 3, 3.55]], cell=[6, 6, 6], pbc=True)
    with pytest.raises(Cp2kError) as info:
        cp2k_md_frames(nitrogen, pbe, 300, 2, **CP2K_MD, seed=1, workdir=tmp_path / "n2", mpi="")
    assert info.value.kind == "crashed"
    assert str(tmp_path / "n2") in info.value.message and "<N>" in info.value.message


def test_cp2k_md_with_a_missing_command_is_a_clear_error(xtb, tmp_path):
    with pytest.raises(RuntimeError, match=r"cannot run '/nonexistent/cp2k -i label.inp") as info:
        cp2k_md_frames(read(WATER), xtb, 300, 2, **CP2K_MD, seed=1, workdir=tmp_path / "w",
                       command="/nonexistent/cp2k", mpi="")
    assert str(tmp_path / "w") in str(info.value)


# --------------------------------------------------------------------------
# the rule
# --------------------------------------------------------------------------


def test_test_md_rule_builds_the_test_set_that_label_labels(tmp_path):
    from alflow import ENERGY_KEY, FORCES_KEY
    from alflow.io import read_many
    from workflow import job_counts, make_campaign, run

    wd = make_campaign(tmp_path, "emt", test_set={
        "source": "reference_md", "n_structures": 6,
        "md": {"timestep_fs": 2.0, "equilibration_steps": 20, "interval_steps": 10, "friction": 0.02}})
    counts = job_counts(run(wd, "-n").stdout)
    assert counts["test_md"] == 1 and "test_structures" not in counts
    labels = [f"results/test/label/chunk_{c}.xyz" for c in range(2)]  # chunk_size 3
    run(wd, *labels)
    structures = read_many(wd / f"results/test/structures/chunk_{c}.xyz" for c in range(2))
    assert [f.info["origin"] for f in structures] == [
        f"test_md:{t}K:{k}" for k, t in enumerate([600, 600, 600, 1200, 1200, 1200])]
    labelled = read_many(wd / path for path in labels)
    assert len(labelled) == 6
    assert all(ENERGY_KEY in f.info and FORCES_KEY in f.arrays for f in labelled)
    log = (wd / "results/logs/test_md.log").read_text()
    assert "MD run 1/2 (T=600 K, structure 0): 3 frames" in log
