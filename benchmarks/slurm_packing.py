"""Batch jobs and wall time of a tiny xTB campaign: local vs SLURM one job per
rule and wildcard, SLURM with the packing settings of the template profile
(profiles/slurm: group committee_{it}, the sample packs as a job array,
committee.train_in_one_job, one job per label chunk, 2 singlepoints at once
in each), the same with one label chunk and one
walker pack per iteration, and inside one allocation (profiles/slurm-allocation,
driven by one sbatch job; its wall time is also measured inside that job).

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
from slurmtools import packing_args  # noqa: E402
from workflow import SNAKEMAKE, make_campaign  # noqa: E402

STATEDIR = os.environ.get("ALFLOW_SLURM_STATEDIR", "/tmp/slurm")

ONE_JOB = {"committee": {"train_in_one_job": True}}
LARGE = {"selection": {"chunk_size": 8}, "sampling": {"packs": 1}}
PACKED = packing_args()  # the test profile: label tasks 4, concurrent 2
VARIANTS = {  # name: (where, config overrides, extra snakemake arguments)
    "local": ("local", {}, []),
    "slurm, a job per rule and wildcard": ("slurm", {}, []),
    "slurm, packed (template profile)": ("slurm", ONE_JOB, PACKED),
    "slurm, packed, 1 label chunk + 1 pack": ("slurm", {**ONE_JOB, **LARGE}, PACKED),
    "inside one allocation (sbatch -n 4)": ("allocation", {}, ["4"]),
    "inside one allocation (sbatch -n 2)": ("allocation", {}, ["2"]),
}
# label declares `mpi`: with plugin 2.8.0 / jobstep 0.6.1 every task of a label
# array runs the first task's job (the jobstep's MPI branch ignores the array
# index), so label chunks are packed by a group, and only sample packs by an array


def slurm_env() -> dict:
    text = Path(STATEDIR, "env.sh").read_text()
    conf = re.search(r"SLURM_CONF=(\S+)", text).group(1)
    env = dict(os.environ, SLURM_CONF=conf)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def run(name: str, where: str, overrides: dict, extra: list[str]) -> dict:
    overrides = {**overrides, "committee": {"device": "cpu", **overrides.get("committee", {})}}
    wd = make_campaign(Path(tempfile.mkdtemp(prefix="pack-")), "xtb", **overrides)
    if where == "allocation":  # extra: the CPUs of the sbatch job running snakemake inside it
        ncpu, extra = extra[0], []
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml", *extra]
    env = slurm_env() if where != "local" else dict(os.environ)
    if where == "slurm":
        cmd += ["--profile", str(REPO / "tests" / "slurm" / "profile")]
    elif where == "allocation":
        cmd += ["--profile", str(REPO / "profiles" / "slurm-allocation"), "--cores", ncpu]
        (wd / "driver.sh").write_text(f"#!/bin/bash\ncd {wd}\necho inner-start $(date +%s.%N)\n"
                                      f"{' '.join(cmd)}\nrc=$?\necho inner-end $(date +%s.%N)\n"
                                      "exit $rc\n")
        cmd = ["sbatch", "--wait", "-n", ncpu, "-t", "60", "-A", "testacct", "-p", "cpu",
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
    if where == "allocation":  # also the time inside the job: no queue, no sbatch --wait polling
        t = dict(re.findall(r"inner-(start|end) (\S+)", log))
        inner = float(t["end"]) - float(t["start"])
        return {"variant": name, "wall_s": wall, "batch_jobs": 1,
                "per_rule": {"driver": 1, "inside the job (s)": round(inner)}, "inner_s": inner}
    jobs = re.findall(r"submitted with SLURM jobid \S+ \(log: \S*/(?:rule|group)_(\w+?)/", log)
    jobs = [j.split("_")[0] + " group" if j.startswith(("committee_", "label_")) else j
            for j in jobs]  # rule_<rule>, or group_<groupid>_<rules>
    jobs += ["sample array"] * len(re.findall(r"Submitted array job with Snakemake IDs", log))
    per_rule = {r: jobs.count(r) for r in sorted(set(jobs))}
    return {"variant": name, "wall_s": wall, "batch_jobs": len(jobs), "per_rule": per_rule}


def main() -> None:
    only = sys.argv[1:]  # variant names to run (substrings); all by default
    print(f"{'variant':40s} {'wall s':>7s} {'x local':>8s} {'batch jobs':>10s}  per rule", flush=True)
    base = None
    for name, spec in VARIANTS.items():  # each row as soon as it is measured
        if only and not any(o in name for o in only):
            continue
        r = run(name, *spec)
        base = base or r["wall_s"]
        print(f"{r['variant']:40s} {r['wall_s']:7.0f} {r['wall_s'] / base:8.2f} "
              f"{r['batch_jobs']:10d}  {r['per_rule']}", flush=True)
        if "inner_s" in r:
            print(f"{'  the same, inside the job':40s} {r['inner_s']:7.0f} "
                  f"{r['inner_s'] / base:8.2f}", flush=True)


if __name__ == "__main__":
    main()
