"""alflow.md: the MD plan and plain ASE Langevin MD with one calculator
(ASE EMT on Cu), as used by the foundation-MD bootstrap and the ASE
reference-MD test set."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import units
from ase.calculators.emt import EMT
from ase.io import read
from conftest import rms_displacement

from alflow.md import MdRun, ase_md_frames, md_plan, model_md_frames

REPO = Path(__file__).resolve().parent.parent
CU = REPO / "tests" / "data" / "cu_16.xyz"

ASE_MD = {"timestep_fs": 2.0, "equilibration_steps": 50, "interval_steps": 10, "friction": 0.02}


# --------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------


def test_md_plan_spreads_frames_round_robin_over_temperatures_and_structures():
    assert md_plan(16, [300, 600], 1) == [MdRun(0, 300.0, 0, 8), MdRun(1, 600.0, 0, 8)]
    plan = md_plan(7, [300, 600], 3)
    assert plan == md_plan(7, [300, 600], 3)  # deterministic
    assert [r.index for r in plan] == list(range(len(plan)))
    assert sum(r.n_frames for r in plan) == 7
    per_t = {t: sum(r.n_frames for r in plan if r.temperature == t) for t in (300.0, 600.0)}
    assert per_t == {300.0: 4, 600.0: 3}
    # every (temperature, structure) pair appears once, with 1 or 2 frames
    assert sorted((r.temperature, r.structure) for r in plan) == [
        (t, s) for t in (300.0, 600.0) for s in range(3)]
    assert {r.n_frames for r in plan} == {1, 2}
    # fewer frames than temperatures: the first temperatures only
    assert md_plan(2, [300, 600, 900], 2) == [MdRun(0, 300.0, 0, 1), MdRun(1, 600.0, 0, 1)]
    assert md_plan(0, [300], 1) == []
    with pytest.raises(ValueError, match="temperature"):
        md_plan(4, [], 1)
    with pytest.raises(ValueError, match="n_structures"):
        md_plan(4, [300], 0)


# --------------------------------------------------------------------------
# ASE
# --------------------------------------------------------------------------


def test_ase_md_frames_are_thermal_distinct_bare_and_reproducible():
    cu = read(CU)
    frames = ase_md_frames(cu, EMT(), 600, 20, **ASE_MD, seed=3)
    assert len(frames) == 20
    steps = [int(f.info["origin"].rsplit(":", 1)[1]) for f in frames]
    assert steps == [50 + 10 * (j + 1) for j in range(20)]
    for frame in frames:
        assert set(frame.info) == {"origin", "temperature"} and frame.info["temperature"] == 600.0
        assert frame.info["origin"].startswith("md:600K:")
        assert frame.calc is None and set(frame.arrays) == {"numbers", "positions"}
        assert np.array_equal(frame.numbers, cu.numbers)
        assert np.allclose(frame.cell, cu.cell) and frame.pbc.all()
        # thermal motion, not a tiny jitter nor a melt (Cu at 600 K: ~0.15 A)
        assert 0.05 < rms_displacement(frame, cu) < 0.4
    for a, b in zip(frames, frames[1:]):
        assert rms_displacement(a, b) > 0.05
    # equipartition: <E_pot - E_min> = 3/2 (N - 1) kT for a (nearly) harmonic solid
    ref = cu.copy()
    ref.calc = EMT()
    e_min = ref.get_potential_energy()  # perfect fcc: forces vanish
    excess = []
    for frame in frames:
        frame = frame.copy()
        frame.calc = EMT()
        excess.append(frame.get_potential_energy() - e_min)
    ratio = np.mean(excess) / (1.5 * (len(cu) - 1) * units.kB * 600)
    assert 0.7 < ratio < 1.35, ratio
    # same seed: same frames; another seed: others
    again = ase_md_frames(cu, EMT(), 600, 20, **ASE_MD, seed=3)
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(frames, again))
    other = ase_md_frames(cu, EMT(), 600, 20, **ASE_MD, seed=4)
    assert rms_displacement(other[0], frames[0]) > 0.05


def test_model_md_frames_follow_the_plan_with_one_calculator():
    """The foundation-MD bootstrap: any calculator (here EMT) driving the planned runs."""
    cu = read(CU)
    frames = model_md_frames(EMT(), [cu, cu], [300, 900], 5, **ASE_MD, seed=1,
                             tag="bootstrap_md")
    assert len(frames) == 5
    # runs in the order of md_plan: (300 K, structure 0) has 2 frames, the others 1
    assert [f.info["origin"] for f in frames] == [
        "bootstrap_md:300K:0", "bootstrap_md:300K:1", "bootstrap_md:900K:2",
        "bootstrap_md:300K:3", "bootstrap_md:900K:4"]
    assert len({f.positions.tobytes() for f in frames}) == 5


def test_ase_md_frames_rejects_bad_settings():
    with pytest.raises(ValueError, match="interval_steps"):
        ase_md_frames(read(CU), EMT(), 300, 2, **{**ASE_MD, "interval_steps": 0}, seed=0)
