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
                "ReqCPUS", "ReqTRES", "AllocTRES", "Start", "End"]
STEP_FIELDS = ["JobID", "JobName", "NTasks", "AllocCPUS", "Start", "End", "State"]


def sacct(env, *job_ids: str) -> dict[str, dict[str, str]]:
    out = run_ok(["sacct", "-X", "-P", "-n", "-j", ",".join(job_ids),
                  "-o", ",".join(SACCT_FIELDS)], env)
    rows = [dict(zip(SACCT_FIELDS, line.split("|"))) for line in out.splitlines() if line]
    return {r["JobIDRaw"]: r for r in rows}


def job_steps(env, job_id: str, name: str | None = None) -> list[dict[str, str]]:
    """The steps SLURM recorded for a job (``<job>.<n>``; not batch/extern),
    those named ``name`` only when given."""
    out = run_ok(["sacct", "-P", "-n", "-j", job_id, "-o", ",".join(STEP_FIELDS)], env)
    rows = [dict(zip(STEP_FIELDS, line.split("|"))) for line in out.splitlines() if line]
    return [r for r in rows if re.fullmatch(rf"{job_id}\.\d+", r["JobID"])
            and (name is None or r["JobName"] == name)]


def overlap(a: dict[str, str], b: dict[str, str]) -> bool:
    """Whether two jobs or steps ran at the same time (sacct Start/End, ISO text)."""
    return a["Start"] < b["End"] and b["Start"] < a["End"]


def scontrol(env, job_id: str) -> dict[str, str]:
    out = run_ok(["scontrol", "show", "job", "-o", job_id], env)
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


def submitted(log: str) -> list[str]:
    """SLURM job ids that snakemake reports having submitted (an array's once), in order."""
    return re.findall(r"(?:submitted with SLURM jobid|and SLURM job ID) (\d+)", log)


TEMPLATE = HERE.parent.parent / "profiles" / "slurm" / "config.yaml"


def packing_args() -> list[str]:
    """The shipped template's packing settings as command-line arguments."""
    prof = yaml.safe_load(TEMPLATE.read_text())
    assert "label" not in prof["groups"] and "group-components" not in prof  # chunks side by side
    assert prof["set-resources"]["label"]["concurrent"] > 1
    return ["--groups", *(f"{k}={v}" for k, v in prof["groups"].items()),
            "--slurm-array-jobs", prof["slurm-array-jobs"]]
