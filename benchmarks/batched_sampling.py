"""Walker-steps per second: batched walkers against one walker after the other.

A pack of W walkers (water, 24 atoms, the demo's structure and model size, a
committee of 2) runs NVT Langevin MD for a fixed number of steps, once with
the sequential path (`sampling.batched: false`: one committee call per walker
per step) and once batched (all running walkers in one forward pass per
member, `batch_size` walkers each), for W = 1, 4, 16, 64 and float64/float32,
in one run. Prints walker-steps per second and the ratio batched/sequential.

    .venv/bin/python benchmarks/batched_sampling.py                  # CPU, 1 torch thread
    .venv/bin/python benchmarks/batched_sampling.py --device cuda --walkers 1 16 64 256

The committee is trained once (real CP2K GFN1-xTB labels of 12 rattled water
boxes, 5 epochs of mace_run_train) and cached in benchmarks/out/batched_sampling/;
--models uses your own instead. Trajectories are compared too: batched and
sequential must agree, or the figures mean nothing.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out" / "batched_sampling"

from alflow.io import read_frames, write_frames  # noqa: E402
from alflow.metrics import load_committee  # noqa: E402
from alflow.labelling import label_chunk  # noqa: E402
from alflow.reference import make_reference  # noqa: E402
from alflow.sampling import Walker, explore_pack, fresh  # noqa: E402
from alflow.structures import load_structures, perturb  # noqa: E402
from alflow.training import train_member  # noqa: E402


def committee_models(n_members: int = 2) -> list[str]:
    """Train (once) a small committee on real xTB labels of the demo's water box."""
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    models = [OUT / f"member_{m}.model" for m in range(n_members)]
    if all(m.exists() for m in models):
        return [str(m) for m in models]
    OUT.mkdir(parents=True, exist_ok=True)
    water = load_structures(REPO / cfg["structures"])
    frames = perturb(water, 12, rattle=0.05, strain=0.02, seed=0, tag="bench")
    write_frames(OUT / "structures.xyz", frames)
    ref_cfg = {**cfg["reference"], "cp2k": {**cfg["reference"]["cp2k"],
               "template": str(REPO / cfg["reference"]["cp2k"]["template"])}}
    label_chunk(OUT / "structures.xyz", OUT / "labelled.xyz", OUT / "failed.xyz",
                make_reference(ref_cfg, mpi=""), OUT / "label_work")
    labelled = read_frames(OUT / "labelled.xyz")
    write_frames(OUT / "train.xyz", labelled[:10])
    write_frames(OUT / "valid.xyz", labelled[10:])
    for m, path in enumerate(models):
        train_member(output=str(path), work_dir=str(OUT / f"work_{m}"),
                     log_file=str(OUT / f"train_{m}.log"), threads=2, name=f"member_{m}",
                     train_file=str(OUT / "train.xyz"), valid_file=str(OUT / "valid.xyz"),
                     e0s="average", seed=m, device="cpu", dtype="float64", epochs=5,
                     hyper=cfg["committee"]["mace"])
    return [str(m) for m in models]


def run(calc, starts, n_walkers: int, steps: int, batched: bool, batch_size: int):
    walkers = [Walker(k, 300.0 + 300.0 * (k % 3), None, k) for k in range(n_walkers)]
    t0 = time.perf_counter()
    runs = explore_pack(
        walkers, [(starts[k % len(starts)], "initial") for k in range(n_walkers)], calc,
        seeds=[1000 + k for k in range(n_walkers)], batched=batched, batch_size=batch_size,
        steps=steps, trusted=starts, max_restarts=0, timestep_fs=0.5, save_every=steps,
        friction=0.02, trust_hi=1e9, progress=lambda s: None)
    seconds = time.perf_counter() - t0
    done = sum(r.record["steps"] for r in runs)
    return done / seconds, np.array([r.frames[-1].positions for r in runs])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--walkers", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    ap.add_argument("--steps", type=int, default=20, help="MD steps per walker")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--models", nargs="+", help="committee model files (default: train one)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    models = args.models or committee_models()
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    starts = [fresh(a) for a in load_structures(REPO / cfg["structures"])]
    rows = []
    for dtype in args.dtypes:
        calc = load_committee(models, args.device, dtype)
        run(calc, starts, 2, 3, True, args.batch_size)  # warm-up (first calls are slow)
        for w in args.walkers:
            seq, pos_seq = run(calc, starts, w, args.steps, False, args.batch_size)
            bat, pos_bat = run(calc, starts, w, args.steps, True, args.batch_size)
            rows.append({"dtype": dtype, "walkers": w, "sequential_steps_per_s": seq,
                         "batched_steps_per_s": bat, "speedup": bat / seq,
                         "max_position_difference_A": float(np.abs(pos_seq - pos_bat).max())})
            print(f"{dtype} W={w:4d}: sequential {seq:8.1f}, batched {bat:8.1f} walker-steps/s,"
                  f" x{bat / seq:.2f}", flush=True)
    table = pd.DataFrame(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT / f"results_{args.device}.csv", index=False)
    print(f"\n{args.device}, {args.threads} torch thread(s), batch size {args.batch_size}, "
          f"{args.steps} steps per walker, committee of {len(models)}:")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))


if __name__ == "__main__":
    main()
