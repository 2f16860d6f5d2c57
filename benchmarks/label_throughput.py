"""Reference throughput: the same frames labelled four ways with real CP2K.

1. ``bare``: per-structure CP2K, one launch per frame from the template's own
   guess, nothing else (the floor of today's cost);
2. ``chunk``: the workflow's label chunk with ``reference.cp2k.wfn_guess:
   false`` (each structure on its own, as before);
3. ``guess``: the label chunk as shipped: frames in walker and step order,
   each SCF starting from the previous structure's converged wavefunction;
4. ``reftraj``: one CP2K run for the whole chunk (``MOTION/MD/ENSEMBLE
   REFTRAJ``, every frame a step, CP2K's own wavefunction extrapolation from
   step to step), frames in the same order. Not a workflow path: measured
   here to decide whether one is worth building.

For each: wall seconds, SCF steps per frame, and the largest energy and force
difference from ``bare``. Frames: a finished demo iteration's selection
(``make demo`` first), e.g.

    .venv/bin/python benchmarks/label_throughput.py                       # xTB and PBE, 16 frames
    .venv/bin/python benchmarks/label_throughput.py --methods xtb --frames 8

Writes benchmarks/out/label_throughput.csv.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import time
from pathlib import Path

import ase.io
import numpy as np
import pandas as pd
from ase import units

from alflow.cp2k import (launch_command, launch_environment, load_template, make_input,
                         parse_output, render_input, scf_steps, singlepoint_tree)
from alflow.io import read_frames
from alflow.labelling import label_chunk, similarity_order
from alflow.reference import make_reference

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out" / "label_throughput"
TEMPLATES = {"xtb": REPO / "config" / "cp2k" / "water_xtb.inp",
             "pbe": REPO / "config" / "cp2k" / "water_pbe.inp"}


def demo_frames(n: int) -> list:
    for it in ("iter_002", "iter_001", "iter_003"):
        chunks = sorted((REPO / "results" / it / "select").glob("chunk_*.xyz"))
        frames = [a for c in chunks for a in read_frames(c)]
        if len(frames) >= n:
            return frames[:n]
    raise SystemExit("no demo iteration with enough selected frames: run `make demo` first")


def bare(frames, template, root: Path, mpi: str, tasks: int) -> list[dict]:
    rows = []
    argv = launch_command("cp2k", mpi, tasks)
    for k, atoms in enumerate(frames):
        wd = root / f"struct_{k:04d}"
        wd.mkdir(parents=True)
        (wd / "label.inp").write_text(make_input(template, atoms))
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=wd, env=launch_environment(argv, 1), capture_output=True)
        text = (wd / "label.out").read_text()
        rows.append({"frame": k, "seconds": time.perf_counter() - t0, "scf_steps": scf_steps(text),
                     **parse_output(text, len(atoms))})
    return rows


def chunk(frames, template_path, root: Path, mpi: str, tasks: int, guess: bool) -> list[dict]:
    root.mkdir(parents=True)
    ase.io.write(root / "in.xyz", frames, format="extxyz")
    ref = make_reference({"kind": "cp2k", "cp2k": {"template": str(template_path),
                                                   "wfn_guess": guess}}, mpi=mpi, tasks=tasks,
                         cpus_per_task=1)
    t0 = time.perf_counter()
    label_chunk(root / "in.xyz", root / "out.xyz", root / "failed.xyz", ref, root / "work",
                allow_relabel=True)
    wall = time.perf_counter() - t0
    out = read_frames(root / "out.xyz")
    rows = []
    for k, a in enumerate(out):
        text = (root / "work" / f"struct_{k:04d}" / "label.out").read_text()
        rows.append({"frame": k, "seconds": wall / len(frames), "scf_steps": scf_steps(text),
                     "energy": a.info["REF_energy"], "forces": a.arrays["REF_forces"]})
    return rows


def reftraj(frames, template, root: Path, mpi: str, tasks: int) -> list[dict]:
    """One CP2K MD run that evaluates every frame (ENSEMBLE REFTRAJ)."""
    root.mkdir(parents=True)
    order = similarity_order(frames)
    with open(root / "traj.xyz", "w") as fh:  # CP2K's own xyz: the step in the comment
        for i, k in enumerate(order, 1):
            fh.write(f"{len(frames[k])}\n i = {i}, time = 0.0, E = 0.0\n")
            for s, (x, y, z) in zip(frames[k].get_chemical_symbols(), frames[k].positions):
                fh.write(f"{s} {x:.10f} {y:.10f} {z:.10f}\n")
    with open(root / "traj.cell", "w") as fh:
        fh.write("# step time Ax Ay Az Bx By Bz Cx Cy Cz volume\n")
        for i, k in enumerate(order, 1):
            c = frames[k].cell.array.ravel()
            fh.write(f"{i} 0.0 " + " ".join(f"{v:.10f}" for v in c)
                     + f" {frames[k].get_volume():.10f}\n")
    tree = singlepoint_tree(template.tree, frames[order[0]], "label", stress=False)
    tree["+global"]["run_type"] = "md"
    tree["+motion"] = {
        "+md": {"ensemble": "reftraj", "steps": len(frames),
                "+reftraj": {"traj_file_name": "traj.xyz", "cell_file_name": "traj.cell",
                             "variable_volume": True, "eval_energy_forces": True,
                             "eval_forces": True, "first_snapshot": 1,
                             "last_snapshot": len(frames)}},
        "+print": {"+forces": {"_": "ON", "+each": {"md": 1}},
                   "+trajectory": {"_": "OFF"}, "+velocities": {"_": "OFF"},
                   "+restart": {"_": "OFF"}, "+restart_history": {"_": "OFF"}}}
    (root / "label.inp").write_text(render_input(tree, template.xmlspec))
    argv = launch_command("cp2k", mpi, tasks)
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=root, env=launch_environment(argv, 1), capture_output=True)
    wall = time.perf_counter() - t0
    text = (root / "label.out").read_text()
    forces = list(ase.io.iread(root / "label-frc-1.xyz", format="xyz"))
    comments = re.findall(r"E\s*=\s*(-?\d+\.\d+)", (root / "label-frc-1.xyz").read_text())
    # CP2K's MD output does not mark where one step's SCF starts: the total
    # is counted, per frame it is the mean
    steps = [scf_steps(text) / len(frames)] * len(frames)
    rows = {}
    for i, k in enumerate(order):
        if i >= len(forces):
            break
        rows[k] = {"frame": k, "seconds": wall / len(frames),
                   "scf_steps": steps[i] if i < len(steps) else np.nan,
                   "energy": float(comments[i]) * units.Hartree,
                   "forces": forces[i].positions * units.Hartree / units.Bohr}
    return [rows[k] for k in sorted(rows)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=["xtb", "pbe"], choices=list(TEMPLATES))
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--tasks", type=int, default=2, help="MPI ranks per CP2K run")
    ap.add_argument("--ways", nargs="+", default=["bare", "chunk", "guess", "reftraj"])
    args = ap.parse_args()
    frames = demo_frames(args.frames)
    mpi = "mpirun" if args.tasks > 1 else ""
    table = []
    for method in args.methods:
        template = load_template(TEMPLATES[method])
        results = {}
        for way in args.ways:
            root = OUT / method / way
            shutil.rmtree(root, ignore_errors=True)
            t0 = time.perf_counter()
            if way == "bare":
                rows = bare(frames, template, root, mpi, args.tasks)
            elif way == "reftraj":
                rows = reftraj(frames, template, root, mpi, args.tasks)
            else:
                rows = chunk(frames, TEMPLATES[method], root, mpi, args.tasks, way == "guess")
            wall = time.perf_counter() - t0
            results[way] = rows
            ref = results.get("bare")
            de = df = np.nan
            if ref and way != "bare" and len(rows) == len(ref):
                de = max(abs(a["energy"] - b["energy"]) for a, b in zip(rows, ref))
                df = max(float(np.abs(a["forces"] - b["forces"]).max()) for a, b in zip(rows, ref))
            table.append({"method": method, "way": way, "frames": len(rows), "wall_s": wall,
                          "scf_steps_total": int(np.nansum([r["scf_steps"] for r in rows])),
                          "scf_steps": " ".join(f"{r['scf_steps']:g}" for r in rows),
                          "max_dE_eV": de, "max_dF_eV_per_A": df})
            print(f"{method} {way}: {wall:.1f} s, SCF steps {table[-1]['scf_steps_total']}",
                  flush=True)
    df = pd.DataFrame(table)
    for method in df["method"].unique():
        base = df[(df["method"] == method) & (df["way"] == "bare")]["wall_s"]
        if len(base):
            df.loc[df["method"] == method, "speedup_vs_bare"] = base.iloc[0] / df.loc[
                df["method"] == method, "wall_s"]
    OUT.mkdir(parents=True, exist_ok=True)
    df.to_csv(OUT.parent / "label_throughput.csv", index=False)
    pd.set_option("display.width", 250)
    print(df.drop(columns="scf_steps").to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print("\nSCF steps per frame (input order):")
    for _, r in df.iterrows():
        print(f"  {r['method']:4s} {r['way']:8s} {r['scf_steps']}")


if __name__ == "__main__":
    main()
