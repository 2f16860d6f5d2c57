"""Smoke test of the Snakemake SLURM executor against a real local SLURM cluster.

Starts a one-node cluster with tests/slurm/cluster.sh (or reuses the one whose
state directory is given in $ALFLOW_SLURM_STATEDIR), runs the smoke workflow
tests/slurm/smoke/Snakefile through ``snakemake --profile
tests/slurm/smoke/profile`` (executor ``slurm``, no mock of sbatch) and checks
with sacct/scontrol what SLURM actually received.

The time-limit test (a job killed for TIMEOUT and resubmitted with a longer
limit) needs ~2-3 minutes because SLURM limits have a 1-minute granularity and
slurmctld enforces them every 30 s; it runs in the background while the smoke
test runs. It is opt-in (ALFLOW_SLURM_SMOKE_TIMEOUT=1): the campaign test
in test_campaign_slurm.py covers the same path.

Needs root (the daemons run as root, /etc/slurm/slurm.conf becomes a symlink
for the duration of the test).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

from slurmtools import run_ok as _run, sacct as _sacct, scontrol as _scontrol

HERE = Path(__file__).resolve().parent / "smoke"
SNAKEFILE = HERE / "Snakefile"
PROFILE = HERE / "profile"
# The campaign test covers TIMEOUT -> resubmission; this slower copy is opt-in.
SKIP_TIMEOUT = os.environ.get("ALFLOW_SLURM_SMOKE_TIMEOUT") != "1"


def _snakemake_cmd(workdir: Path, *targets: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE),
            "--directory", str(workdir), "--profile", str(PROFILE), *targets]


def _job_id(path: Path) -> str:
    m = re.search(r"^job=(\d+)$", path.read_text(), re.M)
    assert m, f"no job id in {path}: {path.read_text()!r}"
    return m.group(1)


@pytest.fixture(scope="module")
def overtime_run(slurm_env, tmp_path_factory):
    """Runs the `overtime` target in the background (started before the smoke test)."""
    if SKIP_TIMEOUT:
        yield None
        return
    workdir = tmp_path_factory.mktemp("overtime")
    log = (workdir / "snakemake.out").open("w")
    proc = subprocess.Popen(_snakemake_cmd(workdir, "results/overtime.txt"),
                            env=slurm_env, stdout=log, stderr=subprocess.STDOUT)
    yield proc, workdir
    if proc.poll() is None:  # SIGINT: snakemake scancels its jobs
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    log.close()


def test_smoke_workflow(slurm_env, overtime_run, tmp_path):
    # `overtime_run` is requested only to get the slow run going in parallel
    _run(["sbatch", "--wait", "--wrap", "hostname"], slurm_env, cwd=tmp_path, timeout=120)
    _run(["srun", "-n", "2", "hostname"], slurm_env, timeout=120)

    res = subprocess.run(_snakemake_cmd(tmp_path), env=slurm_env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr

    res_dir = tmp_path / "results"
    ids = {rule: _job_id(res_dir / f"{rule}.txt")
           for rule in ("hello", "mpi", "gpu", "threaded", "fail_once")}
    acct = _sacct(slurm_env, *ids.values())
    ctl = {rule: _scontrol(slurm_env, jid) for rule, jid in ids.items()}

    expected = {  # rule: (comment, partition, account, time limit, ntasks, cpus/task)
        "hello": ("rule_hello", "cpu", "testacct", "00:05:00", "1", "1"),
        "mpi": ("rule_mpi_hello", "cpu", "testacct", "00:05:00", "2", "1"),
        "gpu": ("rule_gpu_job", "gpu", "otheracct", "00:05:00", "1", "1"),
        "threaded": ("rule_threaded", "cpu", "testacct", "00:07:00", "1", "2"),
        "fail_once": ("rule_fail_once", "cpu", "testacct", "00:05:00", "1", "1"),
    }
    for rule, (comment, part, account, limit, ntasks, cpt) in expected.items():
        a, c = acct[ids[rule]], ctl[rule]
        got = (a["Comment"], a["Partition"], a["Account"], a["Timelimit"],
               c["NumTasks"], c["CPUs/Task"])
        assert got == (comment, part, account, limit, ntasks, cpt), (rule, a, c)
        assert a["State"] == "COMPLETED", (rule, a)

    # mpi: srun -n 2 inside the job ran two tasks
    assert (res_dir / "mpi.txt").read_text().count("\n") == 3
    # fake GPU handed out
    assert "gres/gpu=1" in acct[ids["gpu"]]["AllocTRES"]
    assert "CUDA_VISIBLE_DEVICES=0" in (res_dir / "gpu.txt").read_text()
    # slurm_extra reached sbatch
    assert ctl["threaded"]["Nice"] == "7"

    # fail_once: first attempt FAILED, detected, resubmitted
    log = res.stdout + res.stderr
    assert "SLURM status is: 'FAILED'" in log, log
    tries = re.findall(r"SLURM jobid (\d+) \(log: \S*/rule_fail_once/", log)
    assert len(tries) == 2 and tries[1] == ids["fail_once"], log
    assert _sacct(slurm_env, tries[0])[tries[0]]["State"] == "FAILED"

@pytest.mark.slow
@pytest.mark.skipif(SKIP_TIMEOUT, reason="opt-in: ALFLOW_SLURM_SMOKE_TIMEOUT=1")
def test_timeout_is_resubmitted_with_longer_limit(slurm_env, overtime_run):
    proc, workdir = overtime_run
    rc = proc.wait(timeout=420)
    log = (workdir / "snakemake.out").read_text()
    assert rc == 0, log
    assert "SLURM status is: 'TIMEOUT'" in log, log

    final = _job_id(workdir / "results" / "overtime.txt")
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == 2 and submitted[1] == final, log
    acct = _sacct(slurm_env, *submitted)
    first, second = acct[submitted[0]], acct[submitted[1]]
    assert (first["State"], first["Timelimit"]) == ("TIMEOUT", "00:01:00"), first
    assert (second["State"], second["Timelimit"]) == ("COMPLETED", "00:02:00"), second
    assert first["Comment"] == second["Comment"] == "rule_overtime"
