"""Batch jobs and wall time of a tiny xTB campaign: local vs SLURM, and SLURM
with small vs large label chunks / walker packs.

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

VARIANTS = {
    "local": ("local", {}),
    "slurm, chunk_size 2, 2 packs": ("slurm", {}),
    "slurm, chunk_size 8, 1 pack": ("slurm", {"selection": {"chunk_size": 8},
                                              "sampling": {"packs": 1}}),
}


def slurm_env() -> dict:
    text = Path(STATEDIR, "env.sh").read_text()
    conf = re.search(r"SLURM_CONF=(\S+)", text).group(1)
    env = dict(os.environ, SLURM_CONF=conf)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def run(name: str, where: str, overrides: dict) -> dict:
    wd = make_campaign(Path(tempfile.mkdtemp(prefix="pack-")), "xtb",
                       committee={"device": "cpu"}, **overrides)
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml"]
    if where == "slurm":
        cmd += ["--profile", str(REPO / "tests" / "slurm" / "profile")]
        env = slurm_env()
    else:
        cmd += ["--profile", str(REPO / "profiles" / "local")]
        env = dict(os.environ)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=wd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    log = proc.stdout + proc.stderr
    jobs = re.findall(r"submitted with SLURM jobid \d+ \(log: \S*/rule_(\w+?)/", log)
    per_rule = {r: jobs.count(r) for r in sorted(set(jobs))}
    return {"variant": name, "wall_s": wall, "batch_jobs": len(jobs), "per_rule": per_rule}


def main() -> None:
    rows = [run(name, where, ov) for name, (where, ov) in VARIANTS.items()]
    base = rows[0]["wall_s"]
    print(f"{'variant':34s} {'wall s':>7s} {'x local':>8s} {'batch jobs':>10s}  per rule")
    for r in rows:
        print(f"{r['variant']:34s} {r['wall_s']:7.0f} {r['wall_s'] / base:8.2f} "
              f"{r['batch_jobs']:10d}  {r['per_rule']}")


if __name__ == "__main__":
    main()
