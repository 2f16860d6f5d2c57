"""Which training settings fit the absolute energy, and keep it from drifting over fine-tuning?

Replays the datasets of finished campaigns: per variant of the training
settings and per member seed, a model is trained from scratch on iteration
0's training set and fine-tuned on each later iteration's (as the workflow
does: ``finetune_epochs`` from the previous model), with the campaign's own
E0s, architecture and epochs. Each model is scored on its own training set
and on the campaign's test set: the energy RMSE, its constant offset (mean
error), the offset-free RMSE (``alflow.metrics.energy_errors``, per
composition) and the force RMSE. The sampling is left out on purpose: every
variant sees the same data, so only the training settings differ.

    .venv/bin/python benchmarks/energy_offset.py \\
        --campaign water config/demo.yaml results \\
        --campaign cu benchmarks/out/energy_offset/cu/config.yaml benchmarks/out/energy_offset/cu/results \\
        --variants baseline scaleshift stage_two --members 0 1

Writes benchmarks/out/energy_offset/{replay,summary}.csv and prints the
summary: per campaign and variant, the offset and offset-free RMSE on the
test and training sets per iteration, and the force RMSE.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out" / "energy_offset"

# mace_run_train arguments on top of the campaign's committee.mace; "E0s"
# replaces the campaign's isolated-atom energies, "finetune_lr" the learning
# rate of fine-tuning. mace-torch keeps the best checkpoint among the epochs
# it validates (every eval_interval-th): with the demo's 5 and 10 fine-tuning
# epochs, stage two (the last quarter) was never validated, so every variant
# but "baseline" validates each epoch.
VARIANTS = {
    "baseline": {},
    "eval1": {"eval_interval": 1},
    "scaleshift": {"model": "ScaleShiftMACE", "eval_interval": 1},
    "stage_two": {"stage_two": True, "eval_interval": 1},
    "scaleshift_stage_two": {"model": "ScaleShiftMACE", "stage_two": True, "eval_interval": 1},
    "scaleshift_stage_two_lr": {"model": "ScaleShiftMACE", "stage_two": True,
                                "stage_two_lr": 0.01, "eval_interval": 1},
    "average_e0s": {"E0s": "average", "eval_interval": 1},
    "ema": {"ema": True, "ema_decay": 0.99, "eval_interval": 1},
    "ft_lr": {"finetune_lr": 0.001, "eval_interval": 1},
}


def iterations(results: Path) -> list[Path]:
    """The iterations whose training set changed (converged no-ops are left out)."""
    dirs = sorted(results.glob("iter_[0-9][0-9][0-9]"))
    kept = []
    for d in dirs:
        if not (d / "dataset" / "train.xyz").exists():
            break
        if kept and filecmp.cmp(kept[-1] / "dataset" / "train.xyz", d / "dataset" / "train.xyz",
                                shallow=False):
            continue
        kept.append(d)
    return kept


def chain(name: str, cfg: dict, results: Path, variant: str, member: int) -> list[dict]:
    """Train and fine-tune one member through the campaign's iterations under
    one variant; one row per iteration and scored set."""
    from alflow.training import member_seed, train_member

    over = dict(VARIANTS[variant])
    com = cfg["committee"]
    e0s = over.pop("E0s", None) or json.loads((results / "reference" / "e0s.json").read_text())["e0s"]
    finetune_lr = over.pop("finetune_lr", None)
    work = OUT / name / variant / f"member_{member}"
    rows, previous = [], None
    for d in iterations(results):
        it = int(d.name.split("_")[1])
        model = work / f"iter_{it:03d}.model"
        hyper = {**com["mace"], **over}
        if previous is not None and finetune_lr is not None:
            hyper["lr"] = finetune_lr
        t0 = time.monotonic()
        if not model.exists():
            work.mkdir(parents=True, exist_ok=True)
            train_member(output=str(model), work_dir=str(work / f"work_{it:03d}"),
                         log_file=str(work / f"iter_{it:03d}.log"), threads=1,
                         name=f"member_{member}", train_file=str(d / "dataset" / "train.xyz"),
                         valid_file=str(d / "dataset" / "valid.xyz"), e0s=e0s,
                         seed=member_seed(cfg.get("seed", 0), member), device="cpu",
                         dtype=com["dtype"], epochs=com["finetune_epochs"] if previous
                         else com["epochs"], hyper=hyper,
                         foundation=str(previous) if previous else None)
        seconds = time.monotonic() - t0
        with LOAD:
            rows += score(model, d, results, cfg)
        for r in rows[-2:]:
            r.update(campaign=name, variant=variant, member=member, iteration=it,
                     train_seconds=seconds)
        previous = model
    return rows


LOAD = threading.Lock()  # loading a MACE model patches torch.fx for every thread


def score(model: Path, d: Path, results: Path, cfg: dict) -> list[dict]:
    from alflow.io import read_frames, read_many
    from alflow.metrics import ENERGY_SUMMARY, evaluate, load_committee

    calc = load_committee([str(model)], "cpu", cfg["committee"]["dtype"])
    given = cfg["test_set"]["path"]
    test = read_many([given] if given else sorted((results / "test" / "label").glob("chunk_*.xyz")))
    out = []
    for name, frames in (("test", test), ("train", read_frames(d / "dataset" / "train.xyz"))):
        m = evaluate(calc, frames)
        out.append({"set": name, **{k: m[k] for k in ENERGY_SUMMARY},
                    "force_rmse_meV_per_A": m["force_rmse_meV_per_A"]})
    return out


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean over members, per campaign, variant, set and iteration."""
    cols = ["energy_offset_meV_per_atom", "energy_offset_free_rmse_meV_per_atom",
            "energy_rmse_meV_per_atom", "force_rmse_meV_per_A"]
    df = df.assign(abs_offset=df["energy_offset_meV_per_atom"].abs())
    g = df.groupby(["campaign", "variant", "set", "iteration"])
    out = g[cols + ["abs_offset"]].mean()
    out["ratio"] = out["energy_rmse_meV_per_atom"] / out["energy_offset_free_rmse_meV_per_atom"]
    out["train_s"] = g["train_seconds"].mean()
    return out.reset_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--campaign", nargs=3, action="append", required=True,
                    metavar=("NAME", "CONFIG", "RESULTS"))
    ap.add_argument("--variants", nargs="+", default=["baseline"], choices=list(VARIANTS))
    ap.add_argument("--members", nargs="+", type=int, default=[0])
    ap.add_argument("--jobs", type=int, default=2, help="trainings at once (1 thread each)")
    args = ap.parse_args()
    tasks = []
    for name, config, results in args.campaign:
        from snakemake.utils import validate

        from alflow.config import SCHEMA_PATH

        cfg = yaml.safe_load(Path(config).read_text())
        validate(cfg, str(SCHEMA_PATH))  # fills the schema's defaults
        tasks += [(name, cfg, Path(results), v, m) for v in args.variants for m in args.members]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = [r for rs in pool.map(lambda t: chain(*t), tasks) for r in rs]
    OUT.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    old = OUT / "replay.csv"
    if old.exists():  # keep the rows of other campaigns and variants
        prev = pd.read_csv(old)
        key = ["campaign", "variant", "member", "iteration", "set"]
        df = pd.concat([prev, df]).drop_duplicates(subset=key, keep="last")
    df.to_csv(old, index=False)
    summary = summarize(df)
    summary.to_csv(OUT / "summary.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(summary.round(1).to_string(index=False))


if __name__ == "__main__":
    main()
