"""Does the committee rank the frames of a pool with several conditions? Cu/EMT.

For the campaigns of an al_benchmark arm (default ``wide_bagging``: walkers at
600, 1200 and 1560 K, in the cell as given and strained by ±3 %), every sane
frame the walkers sampled in iterations 1-3 is labelled with EMT (free) and
given the true max atomic force error of the committee that sampled it
(``al_benchmark.true_error_pool``). Per condition (temperature, strain) it
prints the median true error / deviation (the calibration scale), which
conditions hold the 8 largest true errors and the 8 largest deviations of each
pool, and the Spearman rho between deviation and error over the whole pool
and within each condition.

    .venv/bin/python -W ignore benchmarks/pool_conditions.py                 # after al_benchmark.py --arms wide_bagging
    .venv/bin/python -W ignore benchmarks/pool_conditions.py --arm size4_bagging
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

import al_benchmark as ab


def pool_table(arm: str, seeds: list[int], iterations: list[int]) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        wd = ab.BENCH / "emt" / f"{arm}_seed{seed}"
        for it in iterations:
            rows += [{"seed": seed, "iteration": it, "temperature": a.info["temperature"],
                      "volume": a.get_volume(), "deviation": a.info["committee_force_dev"],
                      "error": a.info["true_error"]} for a in ab.true_error_pool(wd, it)]
    df = pd.DataFrame(rows)
    v0 = df["volume"].median()  # most frames are in the cell as given
    df["strain"] = np.select([df["volume"] > 1.05 * v0, df["volume"] < 0.95 * v0],
                             ["+3 %", "-3 %"], "0")
    return df


def rho(g: pd.DataFrame) -> float:
    return float(spearmanr(g["deviation"], g["error"]).statistic) if len(g) > 3 else np.nan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arm", default="wide_bagging")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--k", type=int, default=8, help="the labels per iteration")
    args = ap.parse_args()
    df = pool_table(args.arm, args.seeds, [1, 2, 3])
    df["scale"] = df["error"] / df["deviation"]
    pd.set_option("display.width", 160)
    print(f"{args.arm}, seeds {args.seeds}: {len(df)} sane frames; share of the pool per strain:",
          (df["strain"].value_counts(normalize=True)).round(2).to_dict())
    print("\nmedian true error / deviation, per strain and iteration:")
    print(df.groupby(["strain", "iteration"])["scale"].median().unstack().round(2).to_string())
    print("\nper temperature and iteration:")
    print(df.groupby(["temperature", "iteration"])["scale"].median().unstack().round(2).to_string())
    for col in ("error", "deviation"):
        top = df.groupby(["seed", "iteration"])[col].nlargest(args.k).index.get_level_values(-1)
        print(f"\nthe {args.k} largest {col}s of each pool, share per strain:",
              df.loc[top, "strain"].value_counts(normalize=True).round(2).to_dict())
    pooled = df.groupby(["seed", "iteration"]).apply(rho, include_groups=False)
    within = df.groupby(["seed", "iteration", "temperature", "strain"]).apply(
        rho, include_groups=False)
    print("\nSpearman rho per iteration (mean over seeds), whole pool / within a condition "
          "(mean over conditions):")
    print(pd.DataFrame({"pool": pooled.groupby(level="iteration").mean(),
                        "within": within.groupby(level="iteration").mean()}).round(2).to_string())


if __name__ == "__main__":
    main()
