"""Is the audit's stop rule honest and on time? Measured on Cu/EMT, where the
true error of every sampled frame costs nothing.

For each finished Cu/EMT campaign of benchmarks/al_benchmark.py and each of its
iterations, every sane frame the walkers sampled is labelled with EMT: that
population is what the audit draws from, so its force RMSE is what the audit
estimates. Then, drawing audits from it many times:

1. the estimand: the population's force RMSE against the held-out test RMSE
   of the same committee (the test set judges the stop rule);
2. the estimate with k audit frames: its error, and how often the upper bound
   (the percentile bootstrap of :func:`alflow.calibration.audit_estimate`) lies
   at or above the truth, next to a ratio estimator that also uses the
   deviation of every sampled frame (sum of audit e² / sum of audit d², times
   the mean d² of all frames);
3. the stop rule replayed with simulated audits: k frames, pooled over 1 or 2
   iterations (``convergence.audit_window``), against the test curve: a stop
   is honest when the test RMSE there is ≤ 1.25× the target, late when it
   comes after the iteration following the first test RMSE at or below the
   target (or never, when that iteration was within the campaign).

Run after al_benchmark.py has finished its Cu campaigns:
    .venv/bin/python benchmarks/stop_rule.py [--arms active size4_bagging] [--draws 300]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import al_benchmark as ab  # noqa: E402

from alflow import FORCES_KEY  # noqa: E402
from alflow.calibration import audit_estimate, stop_decision  # noqa: E402

TARGETS = [0.04, 0.06, 0.10]  # eV/Å, as al_benchmark.TARGETS["emt"]


def population(wd: Path, iteration: int) -> tuple[np.ndarray, np.ndarray]:
    """(deviation, force RMSE) of every sane frame one iteration sampled, in
    eV/Å, the force RMSE of the committee that sampled it against EMT."""
    pool = ab.true_error_pool(wd, iteration)
    dev = np.array([a.info["committee_force_dev"] for a in pool])
    err = np.array([np.sqrt(np.mean((a.arrays["committee_forces"] - a.arrays[FORCES_KEY]) ** 2))
                    for a in pool])
    return dev, err


def plain(e, d, mean_d2, seed):
    a = audit_estimate(e, seed=seed, n_boot=500)
    return a["rmse"] / 1000, a["upper"] / 1000


def ratio(e, d, mean_d2, seed, n_boot=500, level=0.95):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(e), size=(n_boot, len(e)))
    boot = np.sqrt(mean_d2 * (e[idx] ** 2).sum(1) / (d[idx] ** 2).sum(1))
    return (float(np.sqrt(mean_d2 * (e ** 2).sum() / (d ** 2).sum())),
            float(np.quantile(boot, 1 - (1 - level) / 2)))


ESTIMATORS = {"bootstrap (in use)": plain, "ratio to deviation": ratio}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arms", nargs="+", default=["active", "size4_bagging"])
    ap.add_argument("--draws", type=int, default=300, help="simulated audits per case")
    args = ap.parse_args()
    curves = pd.read_csv(ab.BENCH / "curves.csv")
    curves = curves[(curves["system"] == "emt") & curves["arm"].isin(args.arms)]
    rng = np.random.default_rng(0)
    pops, tests, survival, min_survival, rows = {}, {}, {}, {}, []
    for (arm, seed), g in curves.groupby(["arm", "seed"]):
        wd = Path(g["wd"].iloc[0])
        min_survival[arm, seed] = yaml.safe_load((wd / "config.yaml").read_text())[
            "convergence"].get("min_walker_survival", 0.75)
        tests[arm, seed] = dict(zip(g["iteration"], g["rmse_in"] / 1000))
        for it in sorted(i for i in g["iteration"] if i > 0):
            cal = wd / "results" / f"iter_{it:03d}" / "calibration.json"
            if not cal.exists():
                continue
            survival[arm, seed, it] = json.loads(cal.read_text()).get("walker_survival")
            d, e = pops[arm, seed, it] = population(wd, it)
            rows.append({"arm": arm, "seed": seed, "iteration": it, "frames": len(d),
                         "population_rmse": 1000 * np.sqrt(np.mean(e ** 2)),
                         "test_rmse": 1000 * tests[arm, seed][it - 1],
                         "corr_d2_e2": np.corrcoef(d ** 2, e ** 2)[0, 1]})
    est = pd.DataFrame(rows)
    est["population/test"] = est["population_rmse"] / est["test_rmse"]
    pd.set_option("display.width", 200)
    print("1. What the audit estimates: the force RMSE (meV/Å) over all sane frames the walkers "
          "sampled with committee i-1, against that committee's test RMSE:")
    print(est.round(2).to_string(index=False))
    print(f"population / test: median {est['population/test'].median():.2f}, "
          f"range {est['population/test'].min():.2f}-{est['population/test'].max():.2f}")

    acc = []
    for key, (d, e) in pops.items():
        true, mean_d2 = np.sqrt(np.mean(e ** 2)), np.mean(d ** 2)
        for k in (2, 4, 8):
            for name, f in ESTIMATORS.items():
                for _ in range(args.draws):
                    i = rng.choice(len(d), k, replace=False)
                    value, upper = f(e[i], d[i], mean_d2, int(rng.integers(1 << 30)))
                    acc.append({"k": k, "estimator": name, "rel_error": abs(value / true - 1),
                                "covered": upper >= true, "upper/true": upper / true})
    acc = pd.DataFrame(acc)
    print("\n2. The estimate from k audit frames (all iterations and campaigns; upper bound at "
          "confidence 0.95, i.e. its 97.5th percentile):")
    print(acc.groupby(["k", "estimator"]).agg(
        median_rel_error=("rel_error", "median"), coverage=("covered", "mean"),
        median_upper_over_true=("upper/true", "median")).round(2).to_string())

    replay = []
    for (arm, seed), test in tests.items():
        its = sorted(i for i in test if (arm, seed, i) in pops)
        for target in TARGETS:
            for k in (2, 4):
                for window in (1, 2):
                    for _ in range(args.draws // 3):
                        stop, earlier = None, []
                        for it in its:
                            d, e = pops[arm, seed, it]
                            i = rng.choice(len(d), k, replace=False)
                            earlier.append(e[i])
                            audit = audit_estimate(np.concatenate(earlier[-window:]),
                                                   seed=int(rng.integers(1 << 30)), n_boot=500)
                            if stop_decision(audit, survival[arm, seed, it], 1000 * target,
                                             min_survival[arm, seed])["converged"]:
                                stop = it
                                break
                        verdict = ab.judge(test, stop, target)
                        replay.append({
                            "target": 1000 * target, "k": k, "audit_window": window,
                            "stopped": stop is not None,
                            "honest": verdict["within_1.25x"] is True,
                            "too_early": verdict["within_1.25x"] is False,
                            "late": verdict["not_late"] is False,
                            "decidable": verdict["not_late"] is not None})
    replay = pd.DataFrame(replay)
    print("\n3. The stop rule replayed with simulated audits (shares of draws; late: among the "
          "cases where the test RMSE reached the target early enough for an on-time stop "
          "within the campaign):")
    summary = replay.groupby(["target", "k", "audit_window"]).agg(
        stopped=("stopped", "mean"), honest=("honest", "mean"), too_early=("too_early", "mean"),
        decidable=("decidable", "mean"))
    late = replay[replay["decidable"]].groupby(["target", "k", "audit_window"])["late"].mean()
    print(summary.join(late.rename("late | decidable")).round(2).to_string())
    overall = replay.groupby(["k", "audit_window"]).agg(
        honest=("honest", "mean"), too_early=("too_early", "mean"))
    late = replay[replay["decidable"]].groupby(["k", "audit_window"])["late"].mean()
    print("\nAll targets together:")
    print(overall.join(late.rename("late | decidable")).round(2).to_string())


if __name__ == "__main__":
    main()
