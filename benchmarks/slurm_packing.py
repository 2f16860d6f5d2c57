"""Batch jobs and wall time of a tiny xTB campaign: local vs SLURM, SLURM
with small vs large label chunks / walker packs, with job arrays, and inside
one allocation (profiles/slurm-allocation, driven by one sbatch job).

Needs the localhost test cluster (root):
    bash tests/slurm/cluster.sh start /tmp/slurm
    ALFLOW_SLURM_STATEDIR=/tmp/slurm .venv/bin/python benchmarks/slurm_packing.py
Prints one row per variant; compare figures within one run only (the machine is
shared and noisy).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "slurm")]
from workflow import SNAKEMAKE, make_campaign  # noqa: E402

STATEDIR = os.environ.get("ALFLOW_SLURM_STATEDIR", "/tmp/slurm")

LARGE = {"selection": {"chunk_size": 8}, "sampling": {"packs": 1}}
VARIANTS = {  # name: (where, config overrides, extra snakemake arguments)
    "local": ("local", {}, []),
    "slurm, chunk_size 2, 2 packs": ("slurm", {}, []),
    "slurm, chunk_size 8, 1 pack": ("slurm", LARGE, []),
    # label declares `mpi`: with plugin 2.8.0 / jobstep 0.6.1 every task of a label
    # array runs the first task's job (the jobstep's MPI branch ignores the array
    # index), so only the sample packs go into an array
    "slurm, chunk_size 2, 2 packs, sample array": ("slurm", {}, ["--slurm-array-jobs=sample"]),
    "inside one allocation (sbatch -n 4)": ("allocation", {}, []),
}


def slurm_env() -> dict:
    text = Path(STATEDIR, "env.sh").read_text()
    conf = re.search(r"SLURM_CONF=(\S+)", text).group(1)
    env = dict(os.environ, SLURM_CONF=conf)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def run(name: str, where: str, overrides: dict, extra: list[str]) -> dict:
    wd = make_campaign(Path(tempfile.mkdtemp(prefix="pack-")), "xtb",
                       committee={"device": "cpu"}, **overrides)
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml", *extra]
    env = slurm_env() if where != "local" else dict(os.environ)
    if where == "slurm":
        cmd += ["--profile", str(REPO / "tests" / "slurm" / "profile")]
    elif where == "allocation":  # one sbatch job running snakemake inside it
        cmd += ["--profile", str(REPO / "profiles" / "slurm-allocation"), "--cores", "4"]
        (wd / "driver.sh").write_text(f"#!/bin/bash\ncd {wd}\n{' '.join(cmd)}\n")
        cmd = ["sbatch", "--wait", "-n", "4", "-t", "60", "-A", "testacct", "-p", "cpu",
               "-o", str(wd / "driver.out"), str(wd / "driver.sh")]
    else:
        cmd += ["--profile", str(REPO / "profiles" / "local")]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=wd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    if where == "allocation":
        log += (wd / "driver.out").read_text()
    if proc.returncode != 0:  # recorded, and the other variants still run
        print(f"{name} failed (in {wd}):\n{log[-2000:]}", file=sys.stderr)
        return {"variant": name, "wall_s": float("nan"), "batch_jobs": -1,
                "per_rule": {"FAILED": proc.returncode}}
    if where == "allocation":
        return {"variant": name, "wall_s": wall, "batch_jobs": 1, "per_rule": {"driver": 1}}
    jobs = re.findall(r"submitted with SLURM jobid \S+ \(log: \S*/rule_(\w+?)/", log)
    jobs += ["(array)"] * len(re.findall(r"Submitted array job with Snakemake IDs", log))
    per_rule = {r: jobs.count(r) for r in sorted(set(jobs))}
    return {"variant": name, "wall_s": wall, "batch_jobs": len(jobs), "per_rule": per_rule}


def main() -> None:
    rows = [run(name, *spec) for name, spec in VARIANTS.items()]
    base = rows[0]["wall_s"]
    print(f"{'variant':40s} {'wall s':>7s} {'x local':>8s} {'batch jobs':>10s}  per rule")
    for r in rows:
        print(f"{r['variant']:40s} {r['wall_s']:7.0f} {r['wall_s'] / base:8.2f} "
              f"{r['batch_jobs']:10d}  {r['per_rule']}")


if __name__ == "__main__":
    main()
