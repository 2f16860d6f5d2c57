"""Batched walkers: one committee evaluation per MD step for all walkers of a pack,
with the real tiny MACE committee of conftest.py."""
import threading

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.io import read

from alflow import DEVIATION_KEY
from alflow.batching import Batcher, CommitteeBatch, run_batched
from alflow.metrics import load_committee
from alflow.sampling import Walker, committee_deviation, explore_pack, fresh


@pytest.fixture(scope="module")
def committee(cu_committee):
    return load_committee(cu_committee, "cpu", "float64")


@pytest.fixture(scope="module")
def starts(cu_dataset):
    return [fresh(a) for a in read(cu_dataset / "train.xyz", ":4")]


def test_batched_committee_matches_one_structure_at_a_time(committee, starts):
    big = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))  # 32 atoms next to 16
    big.rattle(0.05, seed=3)
    structures = starts + [big]
    batched = CommitteeBatch(committee, batch_size=2)(structures)  # chunks of 2, 2, 1
    for atoms, res in zip(structures, batched):
        probe = atoms.copy()
        probe.calc = committee
        assert res["energy"] == pytest.approx(probe.get_potential_energy(), abs=1e-9)
        assert np.abs(res["forces_comm"] - committee.results["forces_comm"]).max() < 1e-10
        assert np.abs(res["forces"] - probe.get_forces()).max() < 1e-10
        assert np.abs(res["stress"] - probe.get_stress()).max() < 1e-10
        assert res["forces_comm"].shape == (2, len(atoms), 3)
        walker_calc = type("C", (), {"results": res})()
        assert committee_deviation(walker_calc) == pytest.approx(
            committee_deviation(committee), abs=1e-10)


MD = dict(steps=30, timestep_fs=2.0, save_every=5, friction=0.02, max_restarts=0,
          progress=lambda s: None)


def pack(committee, starts, walkers, batched, trust_hi=1e6, **kw):
    return explore_pack(walkers, [(starts[w.structure], "initial") for w in walkers], committee,
                        seeds=[100 + w.index for w in walkers], batched=batched, batch_size=2,
                        trusted=starts, trust_hi=trust_hi, **{**MD, **kw})


def positions(run):
    return np.array([a.positions for a in run.frames])


def test_batched_pack_gives_the_sequential_trajectories(committee, starts):
    walkers = [Walker(k, t, None, k) for k, t in enumerate([300.0, 600.0, 900.0])]
    seq = pack(committee, starts, walkers, batched=False)
    bat = pack(committee, starts, walkers, batched=True)
    for s, b in zip(seq, bat):
        assert [a.info["step"] for a in s.frames] == [a.info["step"] for a in b.frames]
        assert np.abs(positions(s) - positions(b)).max() < 1e-8
        devs = [a.info[DEVIATION_KEY] for a in s.frames], [a.info[DEVIATION_KEY] for a in b.frames]
        assert np.allclose(*devs, atol=1e-9)
        assert s.record["steps"] == b.record["steps"] == 30
        assert np.allclose(s.state.get_momenta(), b.state.get_momenta(), atol=1e-8)


def test_a_walker_that_stops_leaves_the_others_unchanged(committee, starts):
    """A walker whose forces are not finite (two atoms on top of each other) stops at
    once and leaves the batch; its NaNs do not reach the others in the same forward
    pass, and their trajectories are those they have without it."""
    broken = starts[1].copy()
    broken.positions[1] = broken.positions[0]
    calm = [Walker(0, 300.0, None, 0), Walker(2, 300.0, None, 2)]
    alone = pack(committee, starts, calm, batched=True)
    walkers = [calm[0], Walker(1, 300.0, None, 1), calm[1]]
    with_broken = [starts[0], broken] + starts[2:]
    runs = explore_pack(walkers, [(with_broken[w.structure], "initial") for w in walkers],
                        committee, seeds=[100 + w.index for w in walkers], batched=True,
                        batch_size=4, trusted=starts, trust_hi=1e6, **MD)
    assert runs[1].record["stop_reason"] == "non_finite" and runs[1].record["steps"] == 0
    for mixed, solo in zip([runs[0], runs[2]], alone):
        assert mixed.record["stop_reason"] == "completed" and mixed.record["steps"] == 30
        assert np.abs(positions(mixed) - positions(solo)).max() < 1e-8


def test_batched_npt_walker_changes_volume_nvt_does_not(committee, starts):
    walkers = [Walker(0, 600.0, 5.0, 0), Walker(1, 600.0, None, 1)]
    runs = pack(committee, starts, walkers, batched=True)
    npt, nvt = (np.array([a.get_volume() for a in r.frames]) for r in runs)
    assert np.ptp(npt) > 1e-3 * npt[0] and np.ptp(nvt) < 1e-9 * nvt[0]
    assert all(a.info["pressure"] == 5.0 for a in runs[0].frames)


def test_mixed_temperatures_keep_their_own_temperature(committee, starts):
    walkers = [Walker(0, 200.0, None, 0), Walker(1, 1200.0, None, 1)]
    runs = pack(committee, starts, walkers, batched=True, steps=300, save_every=3)
    for walker, run in zip(walkers, runs):
        frames = run.frames[10:]  # after ~60 fs of thermalisation
        kinetic = [a.get_kinetic_energy() / (1.5 * units.kB * (len(a) - 1)) for a in frames]
        assert np.mean(kinetic) == pytest.approx(walker.temperature, rel=0.3)


def test_batcher_waits_for_every_running_walker_and_survives_errors():
    sizes = []

    def evaluate(structures):
        sizes.append(len(structures))
        if any(s == "bad" for s in structures):
            raise ValueError("bad structure")
        return [{"x": s} for s in structures]

    def walker(n, bad_at=None):
        def task(calc):
            out = []
            for k in range(n):
                out.append(calc.batcher.submit("bad" if k == bad_at else k)["x"])
            return out
        return task

    assert run_batched([walker(3), walker(1), walker(2)], evaluate) == [[0, 1, 2], [0], [0, 1]]
    assert sizes == [3, 2, 1]  # the walkers that finished left the batch
    sizes.clear()
    with pytest.raises(ValueError, match="bad structure"):
        run_batched([walker(4), walker(4, bad_at=1)], evaluate)
    assert sizes == [2, 2]  # the error reached both waiting walkers; nobody hung
    # a batcher nobody uses any more does not block a late leave
    b = Batcher(evaluate, 1)
    t = threading.Thread(target=b.leave)
    t.start()
    t.join(5)
    assert not t.is_alive()
