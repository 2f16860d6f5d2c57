"""Calibration numbers on hand-made frames whose errors are known exactly."""
import numpy as np
import pytest
from ase import Atoms

from alflow import COMMITTEE_FORCES_KEY, DEVIATION_KEY, FORCES_KEY
from alflow.calibration import frame_errors, spearman, summarize, walker_errors
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
    assert spearman([1, 2, np.inf, 4], [1, 2, 3, 4]) == pytest.approx(1.0)  # finite pairs only
    assert spearman([1, 2, 3], [5, 5, 5]) is None  # constant
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)


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


def test_audit_estimate_and_its_interval():
    from alflow.calibration import audit_estimate

    # four frames with force RMSE 0.1, 0.1, 0.1, 0.3 eV/Å: the RMSE over all
    # components is sqrt(mean of squares) = sqrt(0.12/4) eV/Å
    est = audit_estimate([0.1, 0.1, 0.1, 0.3], seed=1)
    assert est["rmse"] == pytest.approx(1000 * np.sqrt(0.12 / 4))
    assert est["n_frames"] == 4 and est["level"] == 0.95
    assert 100 <= est["lower"] <= est["rmse"] <= est["upper"] <= 300
    assert est["upper"] > 1.2 * est["rmse"]  # one bad frame in four: a wide interval
    # the interval narrows with more frames of the same spread
    many = audit_estimate([0.1, 0.1, 0.1, 0.3] * 25, seed=1)
    assert many["rmse"] == pytest.approx(est["rmse"])
    assert many["upper"] - many["lower"] < 0.5 * (est["upper"] - est["lower"])
    # identical frames: no spread; none: nothing to say; NaN frames are left out
    same = audit_estimate([0.05, 0.05, float("nan")])
    assert same["lower"] == pytest.approx(50) and same["upper"] == pytest.approx(50)
    assert same["n_frames"] == 2
    assert audit_estimate([])["upper"] is None


def test_pooled_audit_takes_only_audit_frames_of_the_window():
    import pandas as pd

    from alflow.calibration import pooled_audit

    def table(it, audit_rmse, selected_rmse):
        return pd.DataFrame({"iteration": it, "selected_by": ["audit"] * len(audit_rmse)
                             + ["balanced"] * len(selected_rmse),
                             "true_force_rmse": audit_rmse + selected_rmse})

    old, new = table(1, [0.3, 0.3], [0.9]), table(2, [0.1, 0.1], [0.5, 0.5])
    one = pooled_audit([new])  # the selected frames (picked for their deviation) never count
    assert one["rmse"] == pytest.approx(100) and one["n_frames"] == 2 and one["iterations"] == [2]
    two = pooled_audit([old, new])  # an older, worse committee raises the estimate
    assert two["rmse"] == pytest.approx(1000 * np.sqrt(0.05)) and two["iterations"] == [1, 2]
    assert two["upper"] > one["upper"]
    assert pooled_audit([table(1, [], [0.5])])["upper"] is None


def test_calibration_scale_is_recovered():
    from alflow.calibration import fit_scale

    rng = np.random.default_rng(0)
    dev = rng.uniform(0.01, 1.0, 400)
    err = 3.0 * dev * rng.lognormal(0.0, 0.3, 400)  # median of the noise is 1
    assert fit_scale(dev, err) == pytest.approx(3.0, rel=0.05)
    assert fit_scale([0.1, 0.2], [0.3, 0.6]) == pytest.approx(3.0)
    # frames where the committee agreed exactly (deviation 0) or NaN are left out
    assert fit_scale([0.0, np.nan, 0.2], [0.5, 1.0, 0.4]) == pytest.approx(2.0)
    assert fit_scale([0.0], [0.5]) is None


def test_stop_rule():
    from alflow.calibration import stop_decision

    audit = {"rmse": 40.0, "lower": 30.0, "upper": 55.0, "n_frames": 4}
    assert stop_decision(audit, 1.0, 60.0, 0.75)["converged"]
    assert stop_decision(audit, 0.8, 55.0, 0.75)["converged"]  # at the target counts
    held = stop_decision(audit, 1.0, 50.0, 0.75)  # the upper bound, not the estimate, decides
    assert not held["converged"] and "upper bound 55" in held["reason"]
    walkers = stop_decision(audit, 0.5, 60.0, 0.75)  # accurate, but walkers keep failing
    assert not walkers["converged"] and "survival" in walkers["reason"]
    assert not stop_decision(audit, 1.0, None, 0.75)["converged"]
    assert not stop_decision({"upper": None}, 1.0, 60.0, 0.75)["converged"]
    # the committee the audit measured must also survive longer (production) MD
    runs = [{"condition": "300 K", "seed": 0, "failed_at_step": None, "ended_by": "completed"},
            {"condition": "300 K", "seed": 1, "failed_at_step": 162, "ended_by": "deviation"}]
    broken = {"stable": False, "survival": 0.5, "steps": 300, "runs": runs}
    probed = stop_decision(audit, 1.0, 60.0, 0.75, probe=broken)
    assert not probed["converged"]
    assert "1 of 2 runs of 300 steps" in probed["reason"] and "deviation at step 162" in probed["reason"]
    fine = {**broken, "stable": True, "survival": 1.0, "runs": runs[:1]}
    assert "probe stable" in stop_decision(audit, 1.0, 60.0, 0.75, probe=fine)["reason"]
    assert stop_decision(audit, 1.0, 60.0, 0.75, probe=fine)["converged"]
    # the audit and the walkers are named first: the probe only decides a stop they allow
    assert "upper bound" in stop_decision(audit, 1.0, 50.0, 0.75, probe=broken)["reason"]


def test_campaign_row_puts_the_audit_next_to_the_test_error():
    row = campaign_row(1, {"n_train": 10, "n_valid": 2}, {"force_rmse_meV_per_A": 80.0},
                       {"converged": False}, {"converged": True, "scale": 2.5,
                                              "stop_reason": "audit upper bound"},
                       audit={"rmse": 70.0, "upper": 90.0, "n_frames": 4})
    assert row["audit_force_rmse"] == 70.0 and row["audit_upper"] == 90.0
    assert row["converged"] and row["calib_scale"] == 2.5


def test_walker_errors_by_walker_and_step():
    a, b, c = labelled(0.1, 0.3), labelled(0.2, -0.5), labelled(0.2, 2.0)
    a.info["step"], b.info["step"] = 10, 55
    c.info.update(walker=3, step=5)
    plain = labelled(0.1, 9.0)  # the bootstrap's frames have no walker and no step
    del plain.info["walker"]
    assert walker_errors(frame_errors([a, b, c, plain])) == \
        {"0": {"10": pytest.approx(0.3), "55": pytest.approx(0.5)}, "3": {"5": pytest.approx(2.0)}}
