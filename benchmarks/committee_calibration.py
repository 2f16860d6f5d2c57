"""Does a larger committee's deviation predict its real error better?

Cu/EMT campaigns (the configuration of benchmarks/al_benchmark.py, 3
iterations, 2 audit frames per iteration) that differ only in
committee.size. Per campaign and iteration it reads calibration.json: the
Spearman rank correlation between the committee's deviation and its true max
atomic force error on the labelled frames, the calibration scale (true error /
deviation, 1 is a deviation on the error's scale), and the audit estimate of
the committee's force RMSE next to its test-set RMSE.

    .venv/bin/python benchmarks/committee_calibration.py [--sizes 2 4] [--seeds 0]

Writes benchmarks/out/committee_calibration/table.csv. Finished campaigns are
reused.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from al_benchmark import EMT, OUT, merge, snakemake  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    out = OUT / "committee_calibration"
    rows = []
    for seed in args.seeds:
        for size in args.sizes:
            wd = out / f"size{size}_seed{seed}"
            cfg = merge(EMT, {"iterations": 3, "seed": seed, "committee": {"size": size},
                              "selection": {"audit": 2, "trust_mode": "fixed",
                                                          "trust_lo": 0.02, "trust_hi": 0.5}})
            snakemake(wd, cfg, args.cores)
            res = wd / "results"
            for i in range(1, cfg["iterations"] + 1):
                cal = json.loads((res / f"iter_{i:03d}" / "calibration.json").read_text())
                test = json.loads((res / f"iter_{i - 1:03d}" / "metrics.json").read_text())
                rows.append({"size": size, "seed": seed, "iteration": i,
                             "spearman": cal["spearman"], "scale": cal["scale"],
                             "audit_rmse": cal["audit"]["rmse"],
                             "audit_upper": cal["audit"]["upper"],
                             "test_rmse_of_committee": test["force_rmse_meV_per_A"]})
    table = pd.DataFrame(rows)
    table.to_csv(out / "table.csv", index=False)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    print("\nmean over iterations and seeds:")
    print(table.groupby("size")[["spearman", "scale", "audit_rmse", "test_rmse_of_committee"]]
          .mean().to_string(float_format=lambda x: f"{x:.3g}"))


if __name__ == "__main__":
    main()
