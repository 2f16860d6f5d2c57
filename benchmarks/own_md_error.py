"""How accurate is each committee in its own MD? The question behind the
water stop rule's "late" stops.

The stop rule waits until the audit (true errors on frames the walkers of a
committee sampled) is below the target and the walkers survive. On water the
held-out test set (reference MD) often says the target was met an iteration or
two earlier. Which is right for a user who runs MD with the potential?

For each committee (iterations 0..3) of the finished water campaigns of
``al_benchmark.py`` (``--system emt``: the Cu campaigns, labelled with EMT),
this runs production MD with the committee's mean forces
(as rule ``validate``: the sampled temperatures, ``--runs`` runs each, batched
Langevin MD from the initial structures) **without** the deviation cap, so
that nothing the committee believes ends a run; only overlapping atoms or
non-finite forces do. Frames from each run (every ``--every`` steps after the
first third, before any failure) are labelled with the campaign's reference
(CP2K GFN1-xTB; results are cached by content, a rerun pays nothing), and the
committee's force RMSE on them is its error in its own MD: the quantity the
audit estimates, from many more frames and without walker stops.

    .venv/bin/python -W ignore benchmarks/own_md_error.py [--seeds 0 1 2 3 4] [--probe]

Writes benchmarks/out/own_md_error/{committees,runs,probes}.csv (rows by
system, arm, seed) and stops_<system>_<arm>.csv, and prints,
per seed and iteration, the test RMSE (curves.csv), the audit of the same
committee (campaign.csv), the own-MD RMSE with a 95 % bootstrap interval over
frames and the runs that failed physically; then the stop rule's stops
(stops.csv of al_benchmark.py, window 1) judged by the test set and by the
own-MD RMSE. ``--probe`` also replays the stop rule with one more condition,
the production validation of the committee the audit measured
(stops_probe_<system>_<arm>.csv).
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import al_benchmark as ab  # noqa: E402

OUT = ab.OUT / "own_md_error"


def committee_paths(wd: Path, iteration: int) -> list[str]:
    return [str(p) for p in ab.committee_models(wd, iteration)]


def own_md(models: list[str], cfg: dict, *, runs: int, steps: int, every: int, seed: int):
    """Production MD of one committee without the cap: (frames to label, runs)."""
    from alflow.metrics import load_committee
    from alflow.structures import load_structures
    from alflow.validation import conditions, run_validation, stable_frames

    s, sel = cfg["sampling"], cfg["selection"]
    conds = conditions(s["temperatures"], s["pressures"], 1)
    result = run_validation(
        load_committee(models, "cpu", "float64"), load_structures(cfg["structures"]), conds,
        seeds=runs, steps=steps, seed=seed, lo=0.0, hi=math.inf,
        min_distance_fraction=sel["min_distance_fraction"], reference=[], rdf_rmax=5.0,
        timestep_fs=s["timestep_fs"], save_every=every, friction=s["friction"],
        batched=True, progress=lambda *a: None)
    # runs and frames come in walker order (condition-major, as run_validation makes them)
    by_walker: dict[int, list] = {}
    for a in result["frames"]:
        by_walker.setdefault(int(a.info["walker"]), []).append(a)
    frames = []
    for w, run in zip(sorted(by_walker), result["runs"]):
        frames += [a for a in stable_frames(by_walker[w], run["failed_at_step"])
                   if a.info["step"] >= steps // 3]
    return frames, result["runs"]


def force_rmse(models: list[str], frames: list) -> tuple[float, float, float, np.ndarray]:
    """Committee-mean force RMSE (meV/Å) over ``frames``, its 95 % bootstrap
    interval over frames, and each frame's squared-error mean."""
    from alflow import FORCES_KEY
    from alflow.metrics import load_committee

    calc = load_committee(models, "cpu", "float64")
    per = []
    for atoms in frames:
        probe = atoms.copy()
        probe.calc = calc
        per.append(float(np.mean((probe.get_forces() - atoms.arrays[FORCES_KEY]) ** 2)))
    per = np.array(per)
    rng = np.random.default_rng(0)
    boot = np.sqrt(per[rng.integers(0, len(per), size=(2000, len(per)))].mean(1))
    return (1000 * float(np.sqrt(per.mean())), 1000 * float(np.quantile(boot, 0.025)),
            1000 * float(np.quantile(boot, 0.975)), per)


def label(frames: list, cfg: dict, workdir: Path) -> list:
    from alflow.io import read_frames, write_frames
    from alflow.labelling import label_chunk
    from alflow.reference import make_reference

    reference = make_reference(cfg["reference"], mpi="", tasks=1)
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src, out, failed = (Path(tmp) / n for n in ("in.xyz", "out.xyz", "failed.xyz"))
        write_frames(src, frames)
        label_chunk(src, out, failed, reference, workdir, cache=OUT / "cache",
                    allow_relabel=True)
        return read_frames(out)


def probe(wd: Path, cfg: dict, it: int, cap: float, seed: int) -> dict:
    """The production validation (rule ``validate``'s settings, capped at the
    deviation level ``cap``) of committee ``it``: {stable, survival, runs}."""
    from alflow.metrics import load_committee
    from alflow.structures import load_structures
    from alflow.validation import conditions, run_validation

    s, sel, v = cfg["sampling"], cfg["selection"], cfg["validation"]
    res = run_validation(
        load_committee(committee_paths(wd, it), "cpu", "float64"),
        load_structures(cfg["structures"]),
        conditions(s["temperatures"], s["pressures"], v["hot_factor"]),
        seeds=v["seeds"], steps=v["steps"] or 10 * s["steps"], seed=seed, lo=0.0, hi=cap,
        min_distance_fraction=sel["min_distance_fraction"], reference=[], rdf_rmax=5.0,
        timestep_fs=s["timestep_fs"], save_every=v.get("save_every", 10), friction=s["friction"],
        batched=True, progress=lambda *a: None)
    return {"stable": res["summary"]["stable"], "survival": res["summary"]["survival"],
            "failed": "; ".join(f"{r['condition']} {r['ended_by']} at {r['failed_at_step']}"
                                for r in res["runs"] if r["failed_at_step"] is not None)}


def probe_replay(system: str, arm: str, seeds: list[int], own: pd.DataFrame) -> None:
    """The stop rule replayed with one more condition: at iteration s the
    committee the audit measured (s-1) must also pass production validation
    (capped at the deviation level its walkers used). Exact for these
    campaigns: they ran without a target, so no stop changed their course."""
    path = OUT / "probes.csv"
    done = (pd.read_csv(path) if path.exists()
            else pd.DataFrame(columns=["system", "arm", "seed", "iteration"]))
    done["system"] = done.get("system", pd.Series(dtype=object)).fillna("water")
    done["arm"] = done.get("arm", pd.Series(dtype=object)).fillna("active")
    rows, out = done.to_dict("records"), []
    for seed in seeds:
        wd = ab.BENCH / system / f"{arm}_seed{seed}"
        cfg = yaml.safe_load((wd / "config.yaml").read_text())
        camp = pd.read_csv(wd / "results" / "campaign.csv").set_index("iteration")
        if cfg["convergence"].get("audit_window", 1) != 1:  # its table holds pooled audits
            print(f"{wd.name}: ran with audit_window {cfg['convergence']['audit_window']}; "
                  "the replay needs the audits of window 1: skipped")
            continue
        g = own[own["seed"] == seed].set_index("iteration")
        for target in ab.TARGETS[system]:
            for variant in ("sampled", "all"):
                stop = math.nan
                for s in range(1, cfg["iterations"] + 1):
                    survival = 1 - camp.loc[s, "walkers_stopped"] / camp.loc[s, "n_walkers"]
                    if not (camp.loc[s - 1, "audit_upper"] <= target
                            and survival >= cfg["convergence"]["min_walker_survival"]):
                        continue
                    hit = [r for r in rows if (r["system"], r["arm"], r["seed"], r["iteration"])
                           == (system, arm, seed, s - 1)]
                    if not hit:
                        hit = [{"system": system, "arm": arm, "seed": seed, "iteration": s - 1,
                                **probe(wd, cfg, s - 1, camp.loc[s, "trust_hi"], seed)}]
                        rows += hit
                        pd.DataFrame(rows).to_csv(path, index=False)
                    failed = [f for f in str(hit[0]["failed"]).split("; ")
                              if f and f != "nan" and (variant == "all" or "(hot)" not in f)]
                    if not failed:
                        stop = s
                        break
                usable = g[(g["own_md_hi"] <= target) & (g["runs_failed"] == 0)]
                due = (float(usable.index[0]) if len(usable) else math.nan) + 1
                at_stop = g.loc[stop, "own_md_rmse"] if stop == stop else math.nan
                out.append({"probe": variant, "seed": seed, "target": target, "stop": stop,
                            "test RMSE at stop": (g.loc[stop, "test_rmse"] if stop == stop
                                                  else math.nan),
                            "own-MD RMSE at stop": at_stop,
                            "honest by own MD": (at_stop <= 1.25 * target if stop == stop
                                                 else math.nan),
                            "not late by own MD": (not due <= cfg["iterations"] if stop != stop
                                                   else due != due or bool(stop <= due))})
    print("\nprobes of the audited committee (production validation):")
    print(pd.DataFrame(rows).sort_values(["seed", "iteration"]).to_string(index=False))
    out = pd.DataFrame(out)
    print("\nthe stop rule with the probe (conditions: the sampled ones, or all with the hot one):")
    print(out.round(0).to_string(index=False))
    out.to_csv(OUT / f"stops_probe_{system}_{arm}.csv", index=False)
    print("\nsummary: stops, honest by own MD, not late by own MD (of the campaign-targets)")
    print(out.groupby("probe").agg(stops=("stop", "count"),
                                   honest=("honest by own MD", lambda x: int((x == True).sum())),  # noqa: E712
                                   not_late=("not late by own MD", "sum"),
                                   cases=("seed", "count")).to_string())


def first_met(values: pd.Series, target: float) -> float:
    met = values[values <= target]
    return float(met.index[0]) if len(met) else math.nan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--system", default="water", choices=list(ab.SYSTEMS))
    ap.add_argument("--arm", default="active")
    ap.add_argument("--runs", type=int, default=2, help="runs per sampled temperature")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=50, help="label a frame every this many steps")
    ap.add_argument("--probe", action="store_true",
                    help="also replay the stop rule with a production-validation probe")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)

    OUT.mkdir(parents=True, exist_ok=True)
    curves = pd.read_csv(ab.BENCH / "curves.csv")
    done_path = OUT / "committees.csv"
    done = pd.read_csv(done_path) if done_path.exists() else pd.DataFrame()
    if not done.empty and "system" not in done:
        done.insert(0, "system", "water")  # written before the Cu runs
    rows, run_rows = ([] if done.empty else done.to_dict("records")), []
    for seed in args.seeds:
        wd = ab.BENCH / args.system / f"{args.arm}_seed{seed}"
        cfg = yaml.safe_load((wd / "config.yaml").read_text())
        campaign = pd.read_csv(wd / "results" / "campaign.csv").set_index("iteration")
        for it in range(cfg["iterations"] + 1):
            models = committee_paths(wd, it)
            key = ab.content_key([Path(m) for m in models])
            if not done.empty and ((done["key"] == key) & (done["seed"] == seed)
                                   & (done["arm"] == args.arm)).any():
                continue
            frames, runs = own_md(models, cfg, runs=args.runs, steps=args.steps,
                                  every=args.every, seed=1000 + seed)
            labelled = label(frames, cfg, OUT / "work" / f"{args.arm}_seed{seed}" / f"iter_{it}")
            rmse, lo, hi, _ = force_rmse(models, labelled)
            test = curves[(curves["system"] == args.system) & (curves["arm"] == args.arm)
                          & (curves["seed"] == seed) & (curves["iteration"] == it)]
            row = {"system": args.system, "arm": args.arm, "seed": seed, "iteration": it, "key": key,
                   "test_rmse": float(test["rmse_in"].iloc[0]) if len(test) else math.nan,
                   "audit_rmse": campaign.loc[it, "audit_force_rmse"],
                   "audit_upper": campaign.loc[it, "audit_upper"],
                   "own_md_rmse": rmse, "own_md_lo": lo, "own_md_hi": hi,
                   "n_frames": len(labelled), "n_label_failed": len(frames) - len(labelled),
                   "runs": len(runs), "runs_failed": sum(r["failed_at_step"] is not None
                                                         for r in runs),
                   "walkers_stopped_next": (campaign.loc[it + 1, "walkers_stopped"]
                                            if it + 1 in campaign.index else math.nan)}
            rows.append(row)
            run_rows += [{**{k: v for k, v in r.items() if k != "seed"}, "run": r["seed"],
                          "system": args.system, "arm": args.arm, "seed": seed,
                          "iteration": it} for r in runs]
            print(f"seed {seed} iteration {it}: own-MD RMSE {rmse:.0f} [{lo:.0f}, {hi:.0f}] "
                  f"meV/Å on {len(labelled)} frames; test {row['test_rmse']:.0f}, audit "
                  f"{row['audit_rmse']:.0f}; {row['runs_failed']} of {len(runs)} runs failed",
                  flush=True)
            pd.DataFrame(rows).to_csv(done_path, index=False)
            if run_rows:
                runs_path = OUT / "runs.csv"
                old = pd.read_csv(runs_path) if runs_path.exists() else pd.DataFrame()
                pd.concat([old, pd.DataFrame(run_rows)]).to_csv(runs_path, index=False)
                run_rows = []
    rows = pd.DataFrame(rows)
    rows = rows[(rows["system"] == args.system) & (rows["arm"] == args.arm)
                & rows["seed"].isin(args.seeds)]
    report(rows, args.system, args.arm)
    if args.probe:
        probe_replay(args.system, args.arm, args.seeds, rows)


def report(df: pd.DataFrame, system: str, arm: str) -> None:
    df = df.sort_values(["seed", "iteration"])
    cols = ["seed", "iteration", "test_rmse", "audit_rmse", "audit_upper", "own_md_rmse",
            "own_md_lo", "own_md_hi", "n_frames", "runs_failed", "runs"]
    print(df[cols].round(0).to_string(index=False))
    print("\nratio own-MD / test RMSE by iteration (median over seeds):")
    print((df["own_md_rmse"] / df["test_rmse"]).groupby(df["iteration"]).median().round(2)
          .to_string())
    print("\nthe stop rule's stops (window 1), judged by the test set and by the committee's "
          "own MD:")
    stops = pd.read_csv(ab.BENCH / "stops.csv")
    stops = stops[(stops["system"] == system) & (stops["arm"] == arm)
                  & (stops["audit_window"] == 1) & stops["seed"].isin(df["seed"].unique())]
    last = int(df["iteration"].max())
    out = []
    for _, st in stops.iterrows():
        g = df[df["seed"] == st["seed"]].set_index("iteration")
        target = float(st["target"])
        # usable: its own-MD upper bound meets the target and no run failed physically
        usable = g[(g["own_md_hi"] <= target) & (g["runs_failed"] == 0)]
        first_usable = float(usable.index[0]) if len(usable) else math.nan
        stop = st["stop_iteration"]
        due = first_usable + 1
        out.append({
            "seed": st["seed"], "target": target, "stop": stop,
            "test first met": first_met(g["test_rmse"], target),
            "own-MD first usable": first_usable,
            "own-MD RMSE at stop": g.loc[stop, "own_md_rmse"] if stop == stop else math.nan,
            "honest by own MD": (g.loc[stop, "own_md_rmse"] <= 1.25 * target
                                 if stop == stop else math.nan),
            "not late by test": bool(st["not_late"]),
            # late: after the iteration following the first usable committee, or no stop
            # although that iteration was within the campaign
            "not late by own MD": (not due <= last if stop != stop
                                   else due != due or bool(stop <= due)),
        })
    print(pd.DataFrame(out).round(0).to_string(index=False))
    pd.DataFrame(out).to_csv(OUT / f"stops_{system}_{arm}.csv", index=False)

if __name__ == "__main__":
    main()
