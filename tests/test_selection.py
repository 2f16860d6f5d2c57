import math

import pytest
from ase import Atoms

from alflow import DEVIATION_KEY
from alflow.selection import classify, is_converged, select


def frame(dev, walker=0, step=0):
    a = Atoms("H", positions=[[0, 0, 0]])
    a.info.update({DEVIATION_KEY: dev, "walker": walker, "step": step})
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
        select([frame(0.2)], 0.1, 0.5, 5, strategy="random")


def test_convergence_threshold():
    assert is_converged({"accurate_ratio": 0.98}, 0.97)
    assert not is_converged({"accurate_ratio": 0.5}, 0.97)
