"""Helpers for tests against the real one-node SLURM cluster of cluster.sh."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CLUSTER_SH = HERE / "cluster.sh"


def cluster(action: str, statedir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER_SH), action, str(statedir)],
                          capture_output=True, text=True, timeout=900, check=False)


def run_ok(cmd, env, **kw) -> str:
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, **kw)
    assert res.returncode == 0, f"{cmd} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


SACCT_FIELDS = ["JobIDRaw", "JobID", "Comment", "Partition", "Account", "Timelimit", "State",
                "ReqCPUS", "ReqTRES", "AllocTRES"]


def sacct(env, *job_ids: str) -> dict[str, dict[str, str]]:
    out = run_ok(["sacct", "-X", "-P", "-n", "-j", ",".join(job_ids),
                  "-o", ",".join(SACCT_FIELDS)], env)
    rows = [dict(zip(SACCT_FIELDS, line.split("|"))) for line in out.splitlines() if line]
    return {r["JobIDRaw"]: r for r in rows}


def scontrol(env, job_id: str) -> dict[str, str]:
    out = run_ok(["scontrol", "show", "job", "-o", job_id], env)
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


def submitted(log: str) -> list[str]:
    """SLURM job ids that snakemake reports having submitted (an array's once), in order."""
    return re.findall(r"(?:submitted with SLURM jobid|and SLURM job ID) (\d+)", log)


TEMPLATE = HERE.parent.parent / "profiles" / "slurm" / "config.yaml"


def packing_args(ranks: int) -> list[str]:
    """The shipped template's packing settings as command-line arguments, with
    its per-group `resources: tasks` set to this cluster's label ranks."""
    prof = yaml.safe_load(TEMPLATE.read_text())
    args = []
    for key in ("groups", "group-components", "set-resource-scopes"):
        args += [f"--{key}", *(f"{k}={v}" for k, v in prof[key].items())]
    assert prof["resources"] == {"tasks": prof["set-resources"]["label"]["tasks"]}
    return args + ["--slurm-array-jobs", prof["slurm-array-jobs"], "--resources", f"tasks={ranks}"]
