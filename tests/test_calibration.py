"""Calibration numbers on hand-made frames whose errors are known exactly."""
import numpy as np
import pytest
from ase import Atoms

from alflow import COMMITTEE_FORCES_KEY, DEVIATION_KEY, FORCES_KEY
from alflow.calibration import frame_errors, spearman, summarize
from alflow.metrics import campaign_row


def labelled(dev, err_atom1, selected_by="balanced"):
    a = Atoms("H2", positions=[[0, 0, 0], [0, 0, 1]])
    ref = np.array([[0.0, 0, 1], [0, 0, -1]])
    pred = ref.copy()
    pred[1, 0] += err_atom1  # error on atom 1 only, along x
    a.arrays[FORCES_KEY] = ref
    a.arrays[COMMITTEE_FORCES_KEY] = pred
    a.info.update({DEVIATION_KEY: dev, "selected_by": selected_by, "walker": 0})
    return a


def test_frame_errors_are_max_atomic_force_errors():
    table = frame_errors([labelled(0.1, 0.3), labelled(0.2, -0.5)])
    assert list(table["true_max_force_error"]) == pytest.approx([0.3, 0.5])
    assert list(table["true_force_rmse"]) == pytest.approx([0.3 / np.sqrt(6), 0.5 / np.sqrt(6)])
    assert list(table["deviation"]) == [0.1, 0.2]
    # a frame without the committee's prediction (e.g. a bootstrap label) is skipped
    plain = labelled(0.1, 0.1)
    del plain.arrays[COMMITTEE_FORCES_KEY]
    assert len(frame_errors([plain])) == 0


def test_spearman_on_known_orderings():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None  # too few
    assert spearman([1, 1, 1], [1, 2, 3]) is None  # constant
    assert spearman([1, 2, 3, np.nan], [3, 2, 1, 0]) == pytest.approx(-1.0)


def test_summary_of_a_hand_made_iteration():
    frames = [labelled(0.1, 0.02), labelled(0.2, 0.08), labelled(0.3, 0.12),
              labelled(0.4, 0.2, "random")]
    s = summarize(frame_errors(frames), trust_lo=0.1)
    assert s["n_labelled"] == 4 and s["spearman"] == pytest.approx(1.0)
    assert s["mean_true_error"] == pytest.approx((0.02 + 0.08 + 0.12 + 0.2) / 4)
    assert s["share_above_trust_lo"] == pytest.approx(0.5)
    assert s["error_over_deviation"] == pytest.approx(np.median([0.2, 0.4, 0.4, 0.5]))
    assert s["random"]["n_labelled"] == 1 and s["random"]["spearman"] is None
    empty = summarize(frame_errors([]), trust_lo=0.1)
    assert empty["n_labelled"] == 0 and empty["spearman"] is None and "random" not in empty


def test_campaign_row_collects_the_iteration():
    row = campaign_row(2, {"n_train": 9, "n_valid": 1, "n_new_labels": 4},
                       {"force_rmse_meV_per_A": 50.0},
                       {"n_walkers_stopped_early": 1, "trust_lo": 0.05, "trust_hi": 0.5,
                        "accurate_ratio": 0.3}, {"spearman": 0.7, "mean_true_error": 0.2})
    assert row["n_labels"] == 10 and row["walkers_stopped"] == 1 and row["calib_spearman"] == 0.7
    assert row["trust_hi"] == 0.5 and row["force_rmse_meV_per_A"] == 50.0
    assert campaign_row(0, {"n_train": 5, "n_valid": 1}, {})["calib_spearman"] is None
