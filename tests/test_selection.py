import math

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from alflow import DESCRIPTOR_KEY, DEVIATION_KEY
from alflow.selection import (classify, farthest_point_sampling, first_past_hi, frame_table,
                              is_converged, is_sane, select, trust_levels)


def frame(dev, walker=0, step=0, descriptor=None):
    a = Atoms("H", positions=[[0, 0, 0]])
    a.info.update({DEVIATION_KEY: dev, "walker": walker, "step": step})
    if descriptor is not None:
        a.info[DESCRIPTOR_KEY] = np.asarray(descriptor, dtype=float)
    return a


@pytest.mark.parametrize("dev,expected", [
    (0.0, "accurate"), (0.0999, "accurate"), (0.1, "candidate"), (0.4999, "candidate"),
    (0.5, "failed"), (3.0, "failed"), (math.nan, "failed"), (math.inf, "failed")])
def test_classify_trust_levels(dev, expected):
    assert classify(dev, 0.1, 0.5) == expected


def test_select_caps_highest_deviation_first():
    frames = [frame(d, step=i) for i, d in enumerate([0.01, 0.2, 0.45, 0.3, 0.9, 0.15])]
    chosen, stats = select(frames, 0.1, 0.5, max_selected=2, strategy="max_deviation")
    assert [a.info[DEVIATION_KEY] for a in chosen] == [0.45, 0.3]
    assert stats["n_accurate"] == 1 and stats["n_candidate"] == 4 and stats["n_failed"] == 1
    assert stats["accurate_ratio"] == pytest.approx(1 / 6)
    assert stats["n_selected"] == 2


def test_balanced_spreads_over_walkers():
    # walker 0 has many high-deviation candidates; walker 1 fewer, lower ones
    frames = [frame(0.4 - 0.01 * i, walker=0, step=i) for i in range(6)]
    frames += [frame(0.2, walker=1, step=1), frame(0.15, walker=1, step=2)]
    chosen, _ = select(frames, 0.1, 0.5, max_selected=4, strategy="balanced")
    assert sorted(a.info["walker"] for a in chosen) == [0, 0, 1, 1]
    greedy, _ = select(frames, 0.1, 0.5, max_selected=4, strategy="max_deviation")
    assert {a.info["walker"] for a in greedy} == {0}


def test_no_candidates_and_empty_input():
    chosen, stats = select([frame(0.01), frame(0.02)], 0.1, 0.5, 5)
    assert chosen == [] and stats["accurate_ratio"] == 1.0
    chosen, stats = select([], 0.1, 0.5, 5)
    assert chosen == [] and stats["accurate_ratio"] is None
    assert not is_converged(stats, 0.9)


def test_bad_trust_levels_and_strategy():
    with pytest.raises(ValueError, match="trust levels"):
        select([frame(0.1)], 0.5, 0.1, 5)
    with pytest.raises(ValueError, match="strategy"):
        select([frame(0.2)], 0.1, 0.5, 5, strategy="nonsense")


def test_convergence_threshold():
    assert is_converged({"accurate_ratio": 0.98}, 0.97)
    assert not is_converged({"accurate_ratio": 0.5}, 0.97)


def test_fixed_trust_levels_are_the_configured_ones():
    assert trust_levels([0.3, 0.4], 0.05, 0.6) == (0.05, 0.6)


def test_adaptive_levels_follow_the_deviation_distribution():
    devs = list(np.linspace(0.01, 1.0, 100)) + [5.0, math.nan]  # 5.0 and NaN: past the cap
    lo, hi = trust_levels(devs, 0.05, 2.0, "adaptive", candidate_fraction=0.2, hi_factor=2.0)
    assert lo == pytest.approx(np.quantile(np.linspace(0.01, 1.0, 100), 0.8))
    assert hi == pytest.approx(2 * lo)
    # a good committee: the quantile falls below the floor, the floor holds
    lo, hi = trust_levels([0.001, 0.002, 0.003], 0.05, 2.0, "adaptive", 0.2, 4.0)
    assert (lo, hi) == (0.05, pytest.approx(0.2))
    # a bad committee: the upper level is capped at trust_hi and stays above lo
    lo, hi = trust_levels([1.0, 1.5, 1.9], 0.05, 2.0, "adaptive", 0.5, 4.0)
    assert hi == 2.0 and lo < hi
    assert trust_levels([], 0.05, 2.0, "adaptive") == (0.05, 2.0)
    with pytest.raises(ValueError, match="trust mode"):
        trust_levels([0.1], 0.05, 2.0, "sometimes")


def test_fps_is_deterministic_and_spreads_points():
    rng = np.random.default_rng(0)
    # three tight clusters of 20 points on a line, far apart
    pts = np.concatenate([c + 0.01 * rng.standard_normal((20, 2)) for c in ([0, 0], [10, 0], [20, 0])])
    picked = farthest_point_sampling(pts, 3, np.random.default_rng(5))
    assert picked == farthest_point_sampling(pts, 3, np.random.default_rng(5))
    assert sorted({k // 20 for k in picked}) == [0, 1, 2]  # one point per cluster
    assert len(set(farthest_point_sampling(np.zeros((4, 2)), 4, rng))) == 4  # no repeats
    assert farthest_point_sampling(pts, 0, rng) == []


def test_fps_strategy_uses_descriptors_of_candidates():
    frames = [frame(0.2 + 0.001 * k, step=k, descriptor=[k // 5 * 10.0, 0]) for k in range(15)]
    frames.append(frame(0.01, step=99, descriptor=[1000.0, 0]))  # accurate: never chosen
    chosen, stats = select(frames, 0.1, 0.5, 3, "fps", seed=1)
    assert sorted(a.info["step"] // 5 for a in chosen) == [0, 1, 2]
    assert all(a.info["selected_by"] == "fps" for a in chosen)
    with pytest.raises(ValueError, match="fps"):
        select([frame(0.2)], 0.1, 0.5, 3, "fps")


def test_random_strategy_ignores_deviation_and_is_seeded():
    frames = [frame(d, step=k) for k, d in enumerate([0.001] * 50 + [0.3] * 5)]
    picks = [select(frames, 0.1, 0.5, 10, "random", seed=s)[0] for s in (1, 1, 2)]
    steps = [[a.info["step"] for a in p] for p in picks]
    assert steps[0] == steps[1] and steps[0] != steps[2] and len(steps[0]) == 10
    # mostly accurate frames, as they are most of the pool
    assert sum(s < 50 for s in steps[0]) >= 5


def test_random_fraction_is_a_tagged_control_arm():
    frames = [frame(0.01 * k, walker=k % 2, step=k) for k in range(40)]
    chosen, stats = select(frames, 0.1, 0.5, 8, "max_deviation", seed=3, random_fraction=0.25)
    by = [a.info["selected_by"] for a in chosen]
    assert by.count("random") == 2 and by.count("max_deviation") == 6
    assert stats["n_selected_random"] == 2 and stats["n_selected"] == 8
    assert len({id(a) for a in chosen}) == 8  # nothing picked twice
    top = sorted((a for a in frames if a.info[DEVIATION_KEY] < 0.5), key=lambda a: -a.info[DEVIATION_KEY])
    strategy_picks = [a for a in chosen if a.info["selected_by"] != "random"]
    assert all(a.info[DEVIATION_KEY] >= top[7].info[DEVIATION_KEY] for a in strategy_picks)


def water(oh=0.96):
    m = molecule("H2O")
    m.set_distance(0, 1, oh, fix=0)
    m.center(vacuum=3.0)
    m.pbc = True
    return m


def test_sanity_sees_atoms_close_only_across_the_periodic_boundary():
    # 9.7 Å apart inside the cell, 0.3 Å through the periodic boundary
    pair = Atoms("Cu2", positions=[[0.2, 5, 5], [9.9, 5, 5]], cell=[10, 10, 10], pbc=True)
    assert not is_sane(pair, 0.6)
    pair.pbc = [False, True, True]  # not periodic along x: really 9.7 Å apart
    assert is_sane(pair, 0.6)
    # a skewed cell: 0.14 Å apart only through the boundary along a + b = (6, 3.5, 0)
    skewed = Atoms("H2", positions=[[0.1, 0.1, 2], [6, 3.5, 2]],
                   cell=[[4, 0, 0], [2, 3.5, 0], [0, 0, 4]], pbc=True)
    assert not is_sane(skewed, 0.6)
    skewed.pbc = False
    assert is_sane(skewed, 0.6)


def test_sanity_of_frames_past_trust_hi():
    assert is_sane(water(), 0.6)
    assert not is_sane(water(0.4), 0.6)  # O-H squeezed to 0.4 Å (usual ~0.97 Å)
    assert is_sane(water(0.4), 0.3)
    frames = []
    for w, (oh, devs) in enumerate([(0.96, [0.1, 0.9, 1.2]), (0.4, [0.8]), (0.96, [0.2, 0.3])]):
        for step, d in enumerate(devs):
            a = water(oh)
            a.info.update({DEVIATION_KEY: d, "walker": w, "step": step})
            frames.append(a)
    frames[1].info["stop"] = "deviation"  # walker 0 stopped at step 1 (restarted later)
    frames[3].info["stop"] = "deviation"  # walker 1 stopped, but squeezed: not sane
    past = first_past_hi(frames, 0.5, 0.6)
    assert [(a.info["walker"], a.info["step"]) for a in past] == [(0, 1)]
    chosen, stats = select(frames, 0.15, 0.5, 4, "balanced", label_past_hi=True)
    assert stats["n_past_hi_sane"] == 1 and stats["n_past_hi_selected"] == 1
    assert [a.info.get("past_hi", False) for a in chosen].count(True) == 1
    chosen, stats = select(frames, 0.15, 0.5, 4, "balanced")
    assert stats["n_past_hi_selected"] == 0 and len(chosen) == 2


@pytest.mark.parametrize("strategy", ["balanced", "max_deviation", "fps"])
def test_a_candidate_with_overlapping_atoms_is_never_labelled(strategy):
    # the committee's most uncertain candidate is a collision (O-H squeezed to
    # 0.4 Å, as biased Cu walkers reached 0.7 Å): its label would be wasted
    frames = []
    for step, (oh, d) in enumerate([(0.4, 0.45), (0.96, 0.3), (0.96, 0.2), (0.96, 0.05)]):
        a = water(oh)
        a.info.update({DEVIATION_KEY: d, "walker": 0, "step": step, DESCRIPTOR_KEY: np.array([oh, d])})
        frames.append(a)
    chosen, stats = select(frames, 0.1, 0.5, 3, strategy)
    assert sorted(a.info["step"] for a in chosen) == [1, 2]
    assert stats["n_candidate"] == 3 and stats["n_candidate_insane"] == 1
    # a user who samples squeezed matter lowers the threshold, and it is labelled
    chosen, stats = select(frames, 0.1, 0.5, 3, strategy, min_distance_fraction=0.3)
    assert sorted(a.info["step"] for a in chosen) == [0, 1, 2] and stats["n_candidate_insane"] == 0


def test_accurate_ratio_against_the_floor_with_adaptive_levels():
    frames = [frame(d, step=k) for k, d in enumerate([0.01, 0.02, 0.3, 0.35, 0.4, 0.45])]
    lo, hi = trust_levels([a.info[DEVIATION_KEY] for a in frames], 0.05, 2.0, "adaptive", 0.5)
    _, stats = select(frames, lo, hi, 2, accurate_below=0.05)
    assert lo > 0.05 and stats["n_accurate"] == 3  # below the adaptive level
    assert stats["accurate_ratio"] == pytest.approx(2 / 6)  # below the floor


def test_frame_table_keeps_every_frame_for_the_report():
    frames = [frame(0.01 * k, walker=k % 2, step=k) for k in range(10)] + [frame(float("nan"))]
    frames[9].info["stop"] = "deviation"
    chosen, _ = select(frames, 0.03, 0.085, 2, "max_deviation", seed=0, random_fraction=0.5)
    table = frame_table(frames, 0.03, 0.085, chosen)
    assert len(table) == 11 and list(table["step"][:3]) == [0, 1, 2]
    assert table["class"].value_counts().to_dict() == {"candidate": 6, "failed": 2, "accurate": 3}
    assert sorted(table["selected_by"][table["selected_by"] != ""]) == ["max_deviation", "random"]
    assert table["stop"][9] == "deviation" and table["stop"][8] == ""
    assert frame_table(frames, 0.03, 0.085, [])["selected_by"].eq("").all()


def test_audit_is_a_uniform_sample_of_sane_frames_only():
    """The audit (and the random control and strategy) never draw a NaN frame
    or one with overlapping atoms; audit frames are tagged and come out of
    the budget first."""
    good = [frame(0.01 * k, walker=k % 2, step=k) for k in range(30)]
    nan = [frame(float("nan"), step=100 + k) for k in range(30)]
    squeezed = []
    for k in range(30):
        a = water(oh=0.3)  # an O-H bond at a third of its length
        a.info.update({DEVIATION_KEY: 0.2, "walker": 0, "step": 200 + k})
        squeezed.append(a)
    frames = good + nan + squeezed
    for seed in range(5):
        chosen, stats = select(frames, 0.1, 0.5, 8, "balanced", seed=seed, audit=3,
                               random_fraction=0.25)
        by = [a.info["selected_by"] for a in chosen]
        assert by.count("audit") == 3 and by.count("random") == 2 and len(chosen) == 8
        uniform = [a for a in chosen if a.info["selected_by"] in ("audit", "random")]
        assert all(a.info["step"] < 30 for a in uniform)
        assert stats["n_selected_audit"] == 3 and stats["n_sane"] == 30
        picks, _ = select(frames, 0.1, 0.5, 8, "random", seed=seed)
        assert all(a.info["step"] < 30 for a in picks)
    # the audit is spread over the deviation range, not drawn from its top
    devs = [a.info[DEVIATION_KEY] for s in range(20)
            for a in select(good, 0.1, 0.5, 4, "max_deviation", seed=s, audit=4)[0]]
    assert min(devs) < 0.1 and max(devs) > 0.2


def test_calibrated_levels_speak_in_true_error():
    """A committee whose deviation is 4x below its real error: a target of
    0.2 eV/Å of real error is a deviation of 0.05."""
    assert trust_levels([0.1], 0.2, 0.8, "calibrated", scale=4.0) == pytest.approx((0.05, 0.2))
    assert trust_levels([0.1], 0.2, 0.8, "calibrated", scale=None) == (0.2, 0.8)  # iteration 1
    assert trust_levels([0.1], 0.2, 0.8, "calibrated", scale=float("nan")) == (0.2, 0.8)
    # before the first calibration a prior scale stands in
    assert trust_levels([0.1], 0.3, 1.2, "calibrated", scale=None,
                        prior_scale=3.0) == pytest.approx((0.1, 0.4))
    frames = [frame(d) for d in (0.01, 0.04, 0.06, 0.3)]
    lo, hi = trust_levels(None, 0.2, 0.8, "calibrated", scale=4.0)
    _, stats = select(frames, lo, hi, 4, "max_deviation")
    assert (stats["n_accurate"], stats["n_candidate"], stats["n_failed"]) == (2, 1, 1)
