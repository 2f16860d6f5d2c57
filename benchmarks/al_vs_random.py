"""Does committee-driven selection need fewer reference labels than random picking?

For each system and seed, the same campaign runs once per arm: the default
(active) selection and the `random` strategy (uniform over the sampled
frames), with the same label budget per iteration, the same bootstrap and the
same seeds. Every campaign is scored on one held-out test set per system,
made by the workflow itself from MD with the reference (test_set.source:
reference_md), which no campaign trains on.

    .venv/bin/python benchmarks/al_vs_random.py                 # emt and water, seeds 0 1 2
    .venv/bin/python benchmarks/al_vs_random.py --systems emt --seeds 0 1 2 3 4

Writes benchmarks/out/al_vs_random.csv and al_vs_random.png (labels vs test
force RMSE, mean and min-max over seeds) and prints, per system, the labels
each arm needs to reach R, the force RMSE that random selection reaches with
its full budget: active / random. Below 1 the active loop saves labels.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
OUT = REPO / "benchmarks" / "out"

# Cu with ASE's EMT: labels cost nothing, so the campaign can afford many.
EMT = {
    "structures": str(REPO / "tests" / "data" / "cu_16.xyz"),
    "iterations": 5,
    "reference": {"kind": "ase", "e0s": "auto",
                  "ase": {"calculator": "ase.calculators.emt.EMT"}},
    "bootstrap": {"n_structures": 8, "rattle": 0.05, "strain": 0.02},
    "test_set": {"source": "reference_md", "n_structures": 40,
                 "md": {"timestep_fs": 2.0, "equilibration_steps": 200, "interval_steps": 25}},
    "committee": {"size": 2, "epochs": 30, "finetune_epochs": 12, "dtype": "float64",
                  "mace": {"r_max": 4.5, "num_channels": 16, "max_L": 0,
                           "num_interactions": 2, "correlation": 2, "batch_size": 4,
                           "valid_batch_size": 8, "lr": 0.01, "energy_weight": 10.0,
                           "forces_weight": 100.0, "eval_interval": 10, "patience": 1000}},
    "sampling": {"temperatures": [600, 1200], "walkers_per_condition": 2, "packs": 2,
                 "steps": 150, "save_every": 5, "timestep_fs": 2.0, "dtype": "float32"},
    "selection": {"trust_lo": 0.02, "trust_hi": 0.5, "max_selected": 8, "chunk_size": 8},
    "convergence": {"accurate_ratio": 1.0},  # never stop early: compare full budgets
    "resources": {"label": {"mpi": ""}},
}

# The demo campaign (config/demo.yaml): 8 water molecules, CP2K GFN1-xTB.
WATER = {
    "iterations": 2,
    "test_set": {"source": "reference_md", "n_structures": 24},
    "convergence": {"accurate_ratio": 1.0},
}

SYSTEMS = {"emt": EMT, "water": WATER}
ARMS = {
    "active": {},  # the config's own selection strategy
    "random": {"selection": {"strategy": "random"}},
    "active_past_hi": {"selection": {"label_past_hi": True}},
}


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def base_config(system: str) -> dict:
    default = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg = merge(default, SYSTEMS[system])
    cfg["structures"] = str(REPO / cfg["structures"]) if not Path(cfg["structures"]).is_absolute() \
        else cfg["structures"]
    tpl = cfg["reference"]["cp2k"]["template"]
    cfg["reference"]["cp2k"]["template"] = str(REPO / tpl) if not Path(tpl).is_absolute() else tpl
    return cfg


def snakemake(workdir: Path, cfg: dict, cores: int) -> float:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml",
           "--cores", str(cores)]
    if (workdir / ".snakemake" / "locks").is_dir():  # a killed earlier run of this benchmark
        subprocess.run(cmd + ["--unlock"], cwd=workdir, capture_output=True)
    t0 = time.monotonic()
    proc = subprocess.run(cmd + ["--rerun-incomplete"], cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"campaign in {workdir} failed:\n{proc.stderr[-4000:]}")
    return time.monotonic() - t0


def shared_reference(system: str, cfg: dict, cores: int) -> tuple[Path, dict]:
    """One reference-MD test set and one set of E0s per system, made by the
    workflow itself (a campaign with no iterations), shared by every arm and seed."""
    wd = OUT / system / "reference"
    test = wd / "test.xyz"
    if not test.exists():
        snakemake(wd, merge(cfg, {"iterations": 0}), cores)
        frames = "".join(p.read_text() for p in sorted((wd / "results" / "test" / "label")
                                                      .glob("chunk_*.xyz")))
        test.write_text(frames)
    e0s = json.loads((wd / "results" / "reference" / "e0s.json").read_text())["e0s"]
    return test, e0s


def run_system(system: str, arms: list[str], seeds: list[int], cores: int) -> pd.DataFrame:
    cfg = base_config(system)
    test, e0s = shared_reference(system, cfg, cores)
    rows = []
    for seed in seeds:
        for arm in arms:
            wd = OUT / system / f"{arm}_seed{seed}"
            run_cfg = merge(cfg, ARMS[arm])
            run_cfg = merge(run_cfg, {"seed": seed, "test_set": {"path": str(test)},
                                      "reference": {"e0s": e0s}})
            wall = snakemake(wd, run_cfg, cores)
            table = pd.read_csv(wd / "results" / "campaign.csv")
            print(f"  {system} {arm} seed {seed}: {wall:.0f} s, final force RMSE "
                  f"{table['force_rmse_meV_per_A'].iloc[-1]:.1f} meV/Å", flush=True)
            for _, r in table.iterrows():
                rows.append({"system": system, "arm": arm, "seed": seed,
                             "iteration": int(r["iteration"]), "n_labels": int(r["n_labels"]),
                             "force_rmse_meV_per_A": r["force_rmse_meV_per_A"],
                             "energy_rmse_meV_per_atom": r["energy_rmse_meV_per_atom"],
                             "calib_spearman": r.get("calib_spearman"),
                             "accurate_ratio": r.get("accurate_ratio"), "wall_s": wall})
    return pd.DataFrame(rows)


def labels_to_reach(curve: pd.DataFrame, target: float) -> float | None:
    """Labels at which a mean learning curve first reaches ``target`` (linear
    interpolation between iterations); None when it never does."""
    x, y = curve["n_labels"].to_numpy(float), curve["force_rmse_meV_per_A"].to_numpy(float)
    if y[0] <= target:
        return float(x[0])
    for k in range(1, len(x)):
        if y[k] <= target:
            return float(x[k - 1] + (x[k] - x[k - 1]) * (y[k - 1] - target) / (y[k - 1] - y[k]))
    return None


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per system and arm: mean learning curve, and labels to reach R."""
    out = []
    for system, sdf in df.groupby("system"):
        curves = {arm: a.groupby("iteration")[["n_labels", "force_rmse_meV_per_A"]].mean()
                  for arm, a in sdf.groupby("arm")}
        if "random" not in curves:
            continue
        target = curves["random"]["force_rmse_meV_per_A"].iloc[-1]
        rand = labels_to_reach(curves["random"], target)
        for arm, curve in curves.items():
            need = labels_to_reach(curve, target)
            out.append({"system": system, "arm": arm, "R_meV_per_A": target,
                        "final_rmse": curve["force_rmse_meV_per_A"].iloc[-1],
                        "labels_budget": curve["n_labels"].iloc[-1],
                        "labels_to_R": need,
                        "ratio_vs_random": None if need is None else need / rand})
    return pd.DataFrame(out)


def plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = sorted(df["system"].unique())
    fig, axes = plt.subplots(1, len(systems), figsize=(5.5 * len(systems), 4), squeeze=False)
    for ax, system in zip(axes[0], systems):
        for arm, a in df[df["system"] == system].groupby("arm"):
            g = a.groupby("iteration")
            x = g["n_labels"].mean()
            y = g["force_rmse_meV_per_A"]
            ax.plot(x, y.mean(), "o-", label=f"{arm} (n={a['seed'].nunique()})")
            ax.fill_between(x, y.min(), y.max(), alpha=0.2)
        ax.set(title=system, xlabel="reference labels", ylabel="test force RMSE (meV/Å)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--systems", nargs="+", default=["emt", "water"], choices=list(SYSTEMS))
    ap.add_argument("--arms", nargs="+", default=["active", "random"], choices=list(ARMS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--fresh", action="store_true", help="delete earlier campaigns first")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    frames = []
    for system in args.systems:
        if args.fresh:
            shutil.rmtree(OUT / system, ignore_errors=True)
        frames.append(run_system(system, args.arms, args.seeds, args.cores))
    df = pd.concat(frames, ignore_index=True)
    df.to_csv(OUT / "al_vs_random.csv", index=False)
    plot(df, OUT / "al_vs_random.png")
    summary = summarize(df)
    summary.to_csv(OUT / "al_vs_random_summary.csv", index=False)
    print("\nMean test force RMSE (meV/Å) per iteration, over seeds:")
    print(df.pivot_table(index=["system", "iteration"], columns="arm",
                         values=["n_labels", "force_rmse_meV_per_A"], aggfunc="mean")
          .round(1).to_string())
    print("\nLabels needed to reach R (random's final mean force RMSE); ratio = arm / random:")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"\nwrote {OUT / 'al_vs_random.csv'} and {OUT / 'al_vs_random.png'}")


if __name__ == "__main__":
    main()
