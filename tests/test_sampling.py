"""Walkers, committee deviation and early stopping, with a real MACE committee."""
import math

import numpy as np
import pytest
from ase.io import read

from ase import Atoms

from alflow import COMMITTEE_FORCES_KEY, DESCRIPTOR_KEY, DEVIATION_KEY
from alflow.metrics import load_committee
from alflow.sampling import (UncertaintyBias, Walker, closest_pairs, committee_deviation,
                             distrusted_walkers, inside_wall,
                             energy_spread_gradient, force_deviation, last_segment_start,
                             make_walkers, pack_walkers, plan_starts, run_walker,
                             structure_descriptor, explore)


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
    assert res.frames[0].info["stop"] == "deviation"
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


def _atoms(x, origin, momenta=False):
    a = Atoms("Cu", positions=[[x, 0, 0]], cell=[5, 5, 5], pbc=True)
    if momenta:
        a.set_momenta([[1.0, 0, 0]])
    a.info["origin"] = origin
    return a


def test_start_policies():
    walkers = make_walkers([300, 600], None, 1, 1)
    initial = [_atoms(0.0, "initial")]
    trusted = initial + [_atoms(float(k), f"iter_001:0:{k}") for k in range(1, 6)]
    previous = {0: (_atoms(9.0, "state0", momenta=True), {"steps": 200}),  # ran long enough
                1: (_atoms(8.0, "state1", momenta=True), {"steps": 3})}    # stalled at step 3
    kw = dict(initial=initial, trusted=trusted, steps=200, min_run_fraction=0.5, seed=4)
    # iteration 1: everyone from the initial structures
    first = plan_starts(walkers, policy="auto", previous=None, **kw)
    assert [why for _, why in first] == ["initial:0", "initial:0"]
    auto = plan_starts(walkers, policy="auto", previous=previous, **kw)
    assert auto[0][1] == "continue" and auto[0][0] is previous[0][0]  # keeps momenta
    start, why = auto[1]
    assert why.startswith("restart:") and start.positions[0, 0] != 8.0
    assert not start.get_momenta().any()  # fresh velocities will be drawn
    assert why == f"restart:{trusted[int(start.positions[0, 0])].info['origin']}"
    # seeded: same seed, same restart frame; the dataset is used, not only the start
    again = plan_starts(walkers, policy="auto", previous=previous, **kw)
    assert again[1][1] == why
    picks = {plan_starts(walkers, policy="auto", previous=previous, **{**kw, "seed": s})[1][1]
             for s in range(20)}
    assert len(picks) > 2
    cont = plan_starts(walkers, policy="continue", previous=previous, **kw)
    assert [why for _, why in cont] == ["continue", "continue"]
    init = plan_starts(walkers, policy="initial", previous=previous, **kw)
    assert [why for _, why in init] == ["initial:0", "initial:0"]
    with pytest.raises(ValueError, match="start policy"):
        plan_starts(walkers, policy="sometimes", previous=previous, **kw)
    with pytest.raises(ValueError, match="walker 1"):
        plan_starts(walkers, policy="auto", previous={0: previous[0]}, **kw)


def test_walkers_whose_labels_were_far_off_restart():
    """Walker 0 completed its run, but a labelled frame of it was off by 30 eV/Å
    (a collision the committee did not see): it restarts. Walker 1's bad
    frame lies in a segment it has left by restarting: it continues."""
    seg = lambda steps, reason="completed": {"steps": steps, "stop_reason": reason}  # noqa: E731
    records = {0: {"steps": 100, "segments": [seg(100)]},
               1: {"steps": 99, "segments": [seg(29, "deviation"), seg(70)]},
               2: {"steps": 100, "segments": [seg(100)]}}
    assert last_segment_start(records[0]) == 0 and last_segment_start(records[1]) == 30
    errors = {"0": {"50": 0.4, "100": 30.0}, "1": {"25": 40.0, "30": 0.5, "95": 1.0},
              "2": {"10": 2.9}}
    assert distrusted_walkers(errors, records, level=3.0) == {0: 30.0}
    assert distrusted_walkers(errors, records, level=2.0) == {0: 30.0, 2: 2.9}
    assert distrusted_walkers({}, records, level=3.0) == {}
    walkers = make_walkers([300, 600], None, 1, 1)
    trusted = [_atoms(float(k), f"iter_001:0:{k}") for k in range(5)]
    previous = {w: (_atoms(9.0, f"state{w}", momenta=True), records[w]) for w in (0, 1)}
    kw = dict(initial=trusted[:1], trusted=trusted, steps=100, min_run_fraction=0.5, seed=4,
              previous=previous)
    starts = plan_starts(walkers, policy="auto", distrusted={0: 30.0}, **kw)
    assert starts[0][1].startswith("restart:") and starts[1][1] == "continue"
    # `continue` is the user's explicit choice: it always continues
    assert [why for _, why in plan_starts(walkers, policy="continue", distrusted={0: 30.0},
                                          **kw)] == ["continue", "continue"]


def test_saved_frames_carry_committee_forces_and_descriptors(committee, cu_dataset):
    start = read(cu_dataset / "train.xyz", 0)
    w = Walker(0, 300.0, None, 0)
    res = run_walker(start, committee, w, steps=6, timestep_fs=1.0, save_every=3,
                     friction=0.02, trust_hi=1e6, seed=1, progress=lambda s: None,
                     describe=lambda a: structure_descriptor(committee, a, [29]))
    for frame in res.frames:
        probe = frame.copy()
        probe.calc = committee
        assert np.allclose(frame.arrays[COMMITTEE_FORCES_KEY], probe.get_forces(), atol=1e-8)
        assert frame.info[DESCRIPTOR_KEY].shape == (8,)  # 8 channels, one element
    d0, d1 = (f.info[DESCRIPTOR_KEY] for f in res.frames[:2])
    assert not np.allclose(d0, d1)
    # two elements: per-element means concatenated, zeros for an absent one
    d = structure_descriptor(committee, start, [1, 29])
    assert d.shape == (16,) and not d[:8].any() and d[8:].any()


def test_a_stalled_walker_restarts_within_the_iteration(committee, cu_dataset):
    trusted = read(cu_dataset / "train.xyz", ":")
    start = trusted[0].copy()
    start.calc = committee
    start.get_forces()
    w = Walker(0, 1500.0, None, 0)
    md = dict(timestep_fs=2.0, save_every=5, friction=0.02, progress=lambda s: None)
    # trust_hi just above the starting deviation: the hot walker soon stops
    hi = committee_deviation(committee) * 1.05
    run = explore(start, committee, w, start_note="initial:0", steps=60, trusted=trusted,
                  max_restarts=3, seed=3, trust_hi=hi, **md)
    rec = run.record
    assert rec["stopped_early"] and rec["restarts"] >= 1
    assert len(rec["segments"]) == rec["restarts"] + 1 <= 4
    assert rec["segments"][1]["start"].startswith("restart:test:1:")  # a dataset frame
    assert rec["steps"] == sum(s["steps"] for s in rec["segments"])
    steps = [a.info["step"] for a in run.frames]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)  # numbered across segments
    assert all(COMMITTEE_FORCES_KEY in a.arrays for a in run.frames)
    again = explore(start, committee, w, start_note="initial:0", steps=60, trusted=trusted,
                    max_restarts=3, seed=3, trust_hi=hi, **md)
    assert again.record["segments"] == rec["segments"]  # reproducible from the seed
    calm = explore(start, committee, w, start_note="continue", steps=10, trusted=trusted,
                   max_restarts=3, seed=3, trust_hi=1e6, **md)
    assert calm.record["restarts"] == 0 and calm.record["stop_reason"] == "completed"
    assert calm.record["steps"] == 10 and not calm.record["stopped_early"]


def _energy_spread(committee, atoms):
    probe = atoms.copy()
    probe.calc = committee
    probe.get_potential_energy()
    return float(np.std(committee.results["energy_comm"]))


def test_energy_spread_gradient_matches_finite_differences(committee, cu_dataset):
    atoms = read(cu_dataset / "train.xyz", 0)
    atoms.rattle(0.05, seed=4)
    atoms.calc = committee
    atoms.get_forces()
    grad = energy_spread_gradient(committee.results["energy_comm"], committee.results["forces_comm"])
    assert grad.shape == (len(atoms), 3) and np.abs(grad).max() > 0
    h = 1e-4
    for i, c in [(0, 0), (3, 2), (7, 1)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, c] += h
        minus.positions[i, c] -= h
        fd = (_energy_spread(committee, plus) - _energy_spread(committee, minus)) / (2 * h)
        assert grad[i, c] == pytest.approx(fd, rel=1e-3, abs=1e-7)
    # members that agree: no direction to push in
    assert not energy_spread_gradient([1.0, 1.0], np.ones((2, 3, 3))).any()


def test_a_biased_walker_is_pushed_where_the_committee_disagrees(committee, cu_dataset):
    start = read(cu_dataset / "train.xyz", 0)
    w = Walker(0, 300.0, None, 0)
    md = dict(steps=40, timestep_fs=1.0, save_every=5, friction=0.02, trust_hi=1e6,
              start_note="initial:0", trusted=[start], max_restarts=0, progress=lambda s: None)
    plain = explore(start, committee, w, seed=5, **md)
    biased = explore(start, committee, w, seed=5, bias=1.0, **md)
    assert "bias_tau" not in plain.record and biased.record["bias_tau"] > 0

    def spread(run):
        return np.mean([_energy_spread(committee, a) for a in run.frames[1:]])

    # same seed, same noise: the bias alone raises the members' energy spread, more when stronger
    stronger = explore(start, committee, w, seed=5, bias=3.0, **md)
    assert spread(plain) < _energy_spread(committee, start) < spread(biased) < spread(stronger)
    # the frames keep the committee's own (unbiased) forces: labels are compared with them
    for frame in biased.frames[1:3]:
        probe = frame.copy()
        probe.calc = committee
        assert np.allclose(frame.arrays[COMMITTEE_FORCES_KEY], probe.get_forces(), atol=1e-8)
    biased_calc = UncertaintyBias(committee, 0.5)
    probe = start.copy()
    probe.calc = biased_calc
    f = probe.get_forces()
    assert not np.allclose(f, biased_calc.results["forces_unbiased"])
    assert np.allclose(f - biased_calc.results["forces_unbiased"], biased_calc.tau * energy_spread_gradient(
        biased_calc.results["energy_comm"], biased_calc.results["forces_comm"]))
    with pytest.raises(ValueError, match="bias strength"):
        UncertaintyBias(committee, 0.0)


def test_closest_pairs_of_the_data_and_the_wall():
    from ase.build import molecule
    h2o = molecule("H2O")
    h2o.center(vacuum=4.0)
    closest = closest_pairs([h2o])
    oh, hh = h2o.get_distance(0, 1), h2o.get_distance(1, 2)
    assert closest[8, 1] == closest[1, 8] == pytest.approx(oh)
    assert closest[1, 1] == pytest.approx(hh) and closest[8, 8] == 4.0  # O-O never seen: the cutoff
    dimer = h2o + h2o
    dimer.positions[3:] += [2.6, 0, 0]  # a second molecule, O-O 2.6 Å
    closest = closest_pairs([h2o, dimer])
    assert closest[8, 8] == pytest.approx(2.6) and closest[8, 1] == pytest.approx(oh)
    assert not inside_wall(dimer, closest, 0.9)
    squeezed = dimer.copy()
    squeezed.positions[3:] -= [0.5, 0, 0]  # O-O 2.1 Å < 0.9 x 2.6 Å
    assert inside_wall(squeezed, closest, 0.9) and not inside_wall(squeezed, closest, 0.8)


def test_the_bias_is_off_inside_the_wall(committee, cu_dataset):
    data = read(cu_dataset / "train.xyz", ":")
    closest = closest_pairs(data)
    assert 2.0 < closest[29, 29] < 2.6
    calc = UncertaintyBias(committee, 0.5, closest=closest, wall=0.9)
    apart = data[0].copy()
    apart.rattle(0.02, seed=1)
    crushed = apart.copy()
    i, j = 0, int(np.argsort(apart.get_distances(0, range(len(apart)), mic=True))[1])
    crushed.set_distance(i, j, 0.8 * closest[29, 29], fix=0.5, mic=True)
    for atoms, off in ((apart, False), (crushed, True)):
        atoms.calc = calc
        f = atoms.get_forces()
        assert np.allclose(f, calc.results["forces_unbiased"]) == off
    assert (calc.steps, calc.steps_off) == (2, 1)
    with pytest.raises(ValueError, match="closest pairs"):
        UncertaintyBias(committee, 0.5, wall=0.9)
    w = Walker(0, 300.0, None, 0)
    run = explore(apart, committee, w, seed=5, bias=1.0, bias_wall=0.9, steps=10, timestep_fs=1.0,
                  save_every=5, friction=0.02, trust_hi=1e6, start_note="initial:0",
                  trusted=data, max_restarts=0, progress=lambda s: None)
    assert run.record["bias_off"] == 0.0 and run.record["bias_tau"] > 0
