"""What limits active learning against random selection on Cu/EMT: the
committee's ranking, the pool the walkers sample, or training noise?

Run after ``al_benchmark.py --systems emt`` (it reads those active campaigns
and test sets). For each seed and iteration i, from the *same* pool (the sane
frames that the walkers of committee i-1 sampled in iteration i) and the same
previous dataset, committee i is retrained as the campaign does it
(fine-tuned from committee i-1, the campaign's seeds and hyperparameters)
with the same number of new labels, picked by:

- ``active``: the campaign's own picks (audit frames included);
- ``random``: uniform over the sane frames of the pool;
- ``oracle``: the frames with the largest *true* max atomic force error of
  committee i-1 (EMT labels cost nothing; no real campaign can do this). If
  the oracle does not beat random, no ranking by a committee can: the pool
  (sampling) or the test distribution limits the gain;
- ``active_reseed``: the campaign's picks, trained with other seeds: the
  training noise at equal data.

Every committee is scored on the benchmark's test sets (force RMSE in and out
of distribution). Ranking over the whole pool: Spearman rho between the
committee deviation and the true max atomic force error, the share of the
oracle's frames among the committee's top frames by deviation, and the mean
true error of each rule's picks.

    .venv/bin/python -W ignore benchmarks/selection_limits.py --seeds 0 1 2 3 4

Writes benchmarks/out/selection_limits/{runs,ranking}.csv; finished
committees are reused.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import al_benchmark as alb  # noqa: E402

OUT = alb.OUT / "selection_limits"
RULES = ("active", "random", "oracle", "active_reseed")
RESEED = 7919  # added to the campaign seed for active_reseed


def picks(rule: str, pool: list, campaign_labels: list, seed: int, it: int) -> list:
    k = len(campaign_labels)
    if rule in ("active", "active_reseed"):
        return campaign_labels
    if rule == "random":
        rng = np.random.default_rng([seed, it, 17])
        return [pool[i] for i in sorted(rng.choice(len(pool), size=k, replace=False))]
    return sorted(pool, key=lambda a: -a.info["true_error"])[:k]  # oracle


def retrain(wd: Path, cfg: dict, it: int, new: list, rule: str, seed: int, run_dir: Path) -> list:
    """Committee ``it`` retrained on dataset ``it-1`` + ``new``, fine-tuned from
    committee ``it-1`` as the campaign does it; returns the model paths."""
    from alflow import dataset
    from alflow.io import read_frames, read_json, write_frames
    from alflow.training import member_seed, train_members

    com = cfg["committee"]
    if com.get("bagging") or cfg["sampling"].get("pressures") or not com.get("finetune", True):
        raise ValueError(f"{wd}: retrain() reproduces fine-tuned members on the whole training "
                         "set without stress; this campaign bags, trains stress or does not "
                         "fine-tune")
    prev = wd / "results" / f"iter_{it - 1:03d}"
    train, valid = dataset.split(new, cfg["dataset"]["valid_fraction"], f"iter_{it:03d}",
                                 seed=cfg["seed"])
    run_dir.mkdir(parents=True, exist_ok=True)
    write_frames(run_dir / "train.xyz", read_frames(prev / "dataset" / "train.xyz") + train)
    write_frames(run_dir / "valid.xyz", read_frames(prev / "dataset" / "valid.xyz") + valid)
    e0s = read_json(wd / "results" / "reference" / "e0s.json")["e0s"]
    shift = RESEED if rule == "active_reseed" else 0
    members = []
    for m in range(com["size"]):
        members.append(dict(
            output=str(run_dir / f"member_{m}.model"), work_dir=str(run_dir / f"work_{m}"),
            log_file=str(run_dir / f"train_{m}.log"), name=f"member_{m}",
            train_file=str(run_dir / "train.xyz"), valid_file=str(run_dir / "valid.xyz"),
            e0s=e0s, seed=member_seed(seed + shift, m), device="cpu", dtype=com["dtype"],
            epochs=com["finetune_epochs"], hyper=com["mace"],
            foundation=str(prev / "models" / f"member_{m}.model")))
    train_members(members, threads=2, gpus=[])
    return [m["output"] for m in members]


def run(seeds: list[int], iterations: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    from alflow.io import read_frames

    bench = alb.BENCH / "emt"
    tests = {"in": str(bench / "test_in.xyz"), "ood": str(bench / "test_ood.xyz")}
    cache_path = OUT / "scores.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    runs, ranking = [], []
    for seed in seeds:
        wd = bench / f"active_seed{seed}"
        cfg = yaml.safe_load((wd / "config.yaml").read_text())
        for it in iterations:
            it_dir = wd / "results" / f"iter_{it:03d}"
            pool = alb.true_error_pool(wd, it)
            by_origin = {a.info["origin"]: a for a in pool}
            campaign = read_frames(it_dir / "label" / "chunk_0.xyz")
            k = len(campaign)
            row = {"seed": seed, "iteration": it, **alb.ranking(pool, k)}
            for rule in RULES:
                chosen = picks(rule, pool, campaign, seed, it)
                row[f"true_error_{rule}"] = float(np.nanmean(
                    [by_origin[a.info["origin"]].info["true_error"] if a.info["origin"]
                     in by_origin else np.nan for a in chosen]))
                key = f"{seed}/{it}/{rule}"
                if key not in cache:
                    t0 = time.monotonic()
                    models = retrain(wd, cfg, it, [a.copy() for a in chosen], rule, seed,
                                     OUT / f"seed{seed}" / f"iter_{it:03d}" / rule)
                    cache[key] = alb.committee_scores(models, tests)
                    cache_path.write_text(json.dumps(cache))
                    print(f"  seed {seed} iteration {it} {rule}: "
                          f"{time.monotonic() - t0:.0f} s, force RMSE in "
                          f"{cache[key]['rmse_in']:.1f} meV/Å", flush=True)
                runs.append({"seed": seed, "iteration": it, "rule": rule, **cache[key]})
            ranking.append(row)
    return pd.DataFrame(runs), pd.DataFrame(ranking)


def paired(runs: pd.DataFrame, metric: str, rule: str, other: str, n_boot: int = 2000) -> dict:
    """Mean over (seed, iteration) of rule / other, with a 95 % interval from
    resampling the seeds, and the mean size of the difference |ratio - 1|
    (for active_reseed / active: the training noise)."""
    wide = runs.pivot_table(index=["seed", "iteration"], columns="rule", values=metric)
    ratio = (wide[rule] / wide[other]).rename("r").reset_index()
    seeds = ratio["seed"].unique()
    rng = np.random.default_rng(0)
    boot = [pd.concat([ratio[ratio["seed"] == s] for s in rng.choice(seeds, len(seeds))])["r"]
            .mean() for _ in range(n_boot)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"rule": rule, "versus": other, "metric": metric, "ratio": ratio["r"].mean(),
            "lower": lo, "upper": hi, "mean |ratio - 1|": (ratio["r"] - 1).abs().mean(),
            "n": len(ratio)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--iterations", nargs="+", type=int, default=[1, 2, 3])
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    runs, ranking = run(args.seeds, args.iterations)
    runs.to_csv(OUT / "runs.csv", index=False)
    ranking.to_csv(OUT / "ranking.csv", index=False)
    pd.set_option("display.width", 200)
    print("\nTest force RMSE (meV/Å) of committee i retrained with each rule's picks, "
          "mean over seeds:")
    print(runs.groupby(["iteration", "rule"])[["rmse_in", "rmse_ood", "p95_in", "p95_ood"]]
          .mean().unstack("rule").round(1).to_string())
    print("\nRatios, mean over seeds and iterations (95 % interval over seeds):")
    table = pd.DataFrame([paired(runs, metric, rule, "random")
                          for metric in ("rmse_in", "rmse_ood", "p95_in", "p95_ood")
                          for rule in ("active", "oracle", "active_reseed")]
                         + [paired(runs, metric, "active_reseed", "active")
                            for metric in ("rmse_in", "rmse_ood")])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print("\nRanking over the pool (mean over seeds; true errors in eV/Å):")
    print(ranking.drop(columns="seed").groupby("iteration").mean().round(3).to_string())


if __name__ == "__main__":
    main()
