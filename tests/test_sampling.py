"""Walkers, committee deviation and early stopping, with a real MACE committee."""
import math

import numpy as np
import pytest
from ase.io import read

from alflow import DEVIATION_KEY
from alflow.metrics import load_committee
from alflow.sampling import (Walker, committee_deviation, force_deviation, make_walkers,
                             pack_walkers, run_walker)


def test_force_deviation_matches_definition():
    f = np.zeros((2, 3, 3))
    f[0, 1] = [0.3, 0, 0]
    f[1, 1] = [-0.3, 0, 0]  # atom 1: members differ by 0.6 -> std 0.3
    f[0, 2] = [0, 0.1, 0]
    assert force_deviation(f) == pytest.approx(0.3)
    f[1, 0, 2] = np.nan
    assert math.isnan(force_deviation(f))


def test_walker_grid_and_packs():
    walkers = make_walkers([300, 600], [0.0, 1.0], per_condition=2, n_structures=3)
    assert len(walkers) == 8
    assert {(w.temperature, w.pressure) for w in walkers} == {
        (300, 0.0), (300, 1.0), (600, 0.0), (600, 1.0)}
    assert [w.structure for w in walkers] == [0, 1, 2, 0, 1, 2, 0, 1]
    packs = [pack_walkers(walkers, 3, p) for p in range(3)]
    assert sorted(w.index for p in packs for w in p) == list(range(8))
    assert make_walkers([300], None, 1, 1)[0].pressure is None


@pytest.fixture(scope="module")
def committee(cu_committee):
    return load_committee(cu_committee, "cpu", "float64")


def test_walker_runs_and_records_deviation(committee, cu_dataset):
    start = read(cu_dataset / "train.xyz", 0)
    w = Walker(0, 600.0, None, 0)
    res = run_walker(start, committee, w, steps=20, timestep_fs=1.0, save_every=5,
                     friction=0.02, trust_hi=1e6, seed=1, progress=lambda s: None)
    assert res.stop_reason == "completed" and res.steps_done == 20
    assert [a.info["step"] for a in res.frames] == [0, 5, 10, 15, 20]
    devs = [a.info[DEVIATION_KEY] for a in res.frames]
    assert all(np.isfinite(devs)) and max(devs) > 0  # two different models disagree
    assert res.state.info["step"] == 20 and np.any(res.state.get_momenta())


def test_walker_stops_early_above_trust_hi(committee, cu_dataset):
    start = read(cu_dataset / "train.xyz", 0)
    start.calc = committee
    start.get_forces()
    first_dev = committee_deviation(committee)
    w = Walker(3, 600.0, None, 0)
    res = run_walker(start, committee, w, steps=50, timestep_fs=1.0, save_every=5,
                     friction=0.02, trust_hi=first_dev * 0.5, seed=1, progress=lambda s: None)
    assert res.stop_reason == "deviation" and res.steps_done == 0
    assert len(res.frames) == 1 and res.frames[0].info[DEVIATION_KEY] >= first_dev * 0.5
    # nothing trusted: the walker continues next iteration from where it started
    assert np.allclose(res.state.positions, start.positions)


def test_walker_npt_changes_volume(committee, cu_dataset):
    start = read(cu_dataset / "train.xyz", 0)
    w = Walker(1, 300.0, 5.0, 0)  # 5 GPa squeezes the cell
    res = run_walker(start, committee, w, steps=30, timestep_fs=2.0, save_every=10,
                     friction=0.05, trust_hi=1e6, seed=2, progress=lambda s: None)
    assert res.stop_reason == "completed"
    assert res.state.get_volume() != pytest.approx(start.get_volume(), rel=1e-6)
    assert res.frames[-1].info["pressure"] == 5.0
