"""The campaign through a real SLURM cluster (slurmctld + slurmd + slurmdbd on
localhost, tests/slurm/cluster.sh) with the real snakemake-executor-plugin-slurm
and the profile tests/slurm/profile: no mock of sbatch.

Checked against what SLURM itself recorded (sacct, scontrol):
- with the packing settings of the shipped template profiles/slurm (the
  committee group with {it} in its name, the sample packs as a job array) and
  committee.train_in_one_job, an iteration is one job for the committee
  (trained, both members at once on 2 GPUs, and evaluated), one array of
  walker packs, and one job per label chunk;
- the label chunks of a stage run side by side, each job asking for one
  chunk's time limit (not the sum), and inside each job 2 CP2K singlepoints run
  at once as `srun --exact` steps of 2 ranks (`concurrent: 2` of 4 tasks);
- those jobs get the profile's partition, time limit, tasks, cpus-per-task,
  GPUs and account; a hybrid CP2K run (e0s: 2 ranks x 2 threads) is a step of
  2 tasks on 4 CPUs;
- snakemake killed mid-campaign, then rerun with --rerun-incomplete, completes
  without relabelling finished chunks;
- a label job killed by SLURM at its time limit (TIMEOUT) is resubmitted with a
  longer limit, reuses the structures it had finished, and the campaign completes.

The GPU partition has 2 fake GPUs (GRES backed by /dev/null): this machine has
none, so training runs on the CPU (committee.device: cpu) inside a job that
SLURM gave GPUs.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from slurmtools import job_steps, overlap, packing_args, sacct, scontrol, submitted
from workflow import REPO, SNAKEMAKE, make_campaign

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PROFILE = REPO / "tests" / "slurm" / "profile"
def snakemake(workdir: Path, *args: str) -> list[str]:
    return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml",
            "--profile", str(PROFILE), *args]


def timeout_campaign(tmp_path: Path) -> Path:
    """EMT made slow (8 s per structure): one bootstrap chunk of 15 structures
    needs ~2 min, its first attempt gets 1 min."""
    return make_campaign(
        tmp_path, "emt", iterations=0,
        reference={"kind": "ase", "e0s": {"Cu": 0.0},
                   "ase": {"calculator": "slowcalc.SlowEMT", "kwargs": {"delay": 8}}},
        bootstrap={"n_structures": 15}, test_set={"n_structures": 2, "source": "perturbed"},
        selection={"chunk_size": 15, "max_selected": 15},
        resources={"label": {"mpi": "", "tasks": 1}})


@pytest.fixture(scope="module")
def timeout_run(slurm_env, tmp_path_factory):
    """Started first, in the background: it mostly waits for SLURM's time limit."""
    wd = timeout_campaign(tmp_path_factory.mktemp("timeout"))
    env = dict(slurm_env, PYTHONPATH=str(REPO / "tests"))
    log = (wd / "snakemake.out").open("w")
    proc = subprocess.Popen(snakemake(wd, "--set-resources", "label:runtime=attempt"),
                            cwd=wd, env=env, stdout=log, stderr=subprocess.STDOUT)
    yield proc, wd
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    log.close()


def sigint_default() -> None:
    """SIGINT as in a terminal, even when the tests run in the background of
    a non-interactive shell (which starts them with SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(predicate, timeout: float, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"snakemake ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def jobs_by_rule(env, log: str) -> dict[str, list[dict]]:
    """What SLURM recorded for each job snakemake submitted (every task of an
    array), by rule, or by group id (comment rule_<groupid>_<rules>)."""
    ids = submitted(log)
    out: dict[str, list[dict]] = {}
    for row in sacct(env, *ids).values():
        if "_" not in row["JobID"]:  # scontrol knows array tasks by their array id
            row.update({k: v for k, v in scontrol(env, row["JobIDRaw"]).items()
                        if k in ("NumTasks", "CPUs/Task", "TimeLimit")})
        m = re.match(r"rule_(committee_\d+|[a-z0-9_]+?)(_wildcards_.*|_.*)?$",
                     row["Comment"])
        out.setdefault(m.group(1), []).append(row)
    return out


def test_campaign_through_slurm_survives_a_kill(slurm_env, timeout_run, tmp_path):
    wd = make_campaign(tmp_path, "xtb", committee={"device": "cpu", "train_in_one_job": True})
    res = wd / "results"
    chunks = [res / "iter_000" / "label" / f"chunk_{c}.xyz" for c in range(4)]
    packed = packing_args()

    # 1. start, and kill snakemake (SIGINT: it cancels its SLURM jobs) once
    #    the bootstrap is labelled and training has been submitted
    first = (wd / "first.out").open("w")
    t0 = time.monotonic()
    proc = subprocess.Popen(snakemake(wd, *packed), cwd=wd, env=slurm_env, stdout=first,
                            stderr=subprocess.STDOUT, preexec_fn=sigint_default)
    wait_for(lambda: all(c.exists() for c in chunks)
             and "group_committee_000" in (wd / "first.out").read_text(), 600, proc, "training")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(120) != 0
    first.close()
    assert not (res / "campaign.csv").exists()
    done = {p: p.stat().st_mtime_ns for p in chunks}
    outs = {p: p.stat().st_mtime_ns for p in res.glob("iter_000/label/work_*/*/label.out")}
    assert len(outs) == 8  # every bootstrap structure was computed once

    # 2. rerun: completes without relabelling the finished chunks
    second = subprocess.run(snakemake(wd, *packed, "--rerun-incomplete"), cwd=wd, env=slurm_env,
                            capture_output=True, text=True, timeout=1200)
    wall = time.monotonic() - t0
    log2 = second.stdout + second.stderr
    assert second.returncode == 0, log2[-5000:]
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())
    assert all(p.stat().st_mtime_ns == t for p, t in outs.items())
    assert "rule_label/iter_000_" not in log2  # no label job of iteration 0 resubmitted
    table = pd.read_csv(res / "campaign.csv")
    assert list(table["iteration"]) == [0, 1]

    # 3. what SLURM received: iteration 1 is a committee job, an array of
    #    walker packs and one job per label chunk
    jobs = jobs_by_rule(slurm_env, (wd / "first.out").read_text() + log2)
    assert set(jobs) == {"e0s", "label", "committee_000", "sample", "committee_001"}, set(jobs)
    label: dict[str, list[dict]] = {}
    for job in jobs["label"]:
        stage, chunk = re.search(r"wildcards_(iter_\d{3}|test)_(\d+)", job["Comment"]).groups()
        label.setdefault(stage, []).append(dict(job, chunk=int(chunk)))
    assert {stage: sorted({j["chunk"] for j in js}) for stage, js in label.items()} == \
        {"test": [0, 1], "iter_000": [0, 1, 2, 3], "iter_001": [0, 1]}
    iteration_1 = jobs["sample"] + label["iter_001"] + jobs["committee_001"]
    assert len({j["JobID"].split("_")[0] for j in iteration_1}) == 4, iteration_1
    assert sorted(j["JobID"].split("_")[1] for j in jobs["sample"]) == ["1", "2"]  # the 2 packs
    # each label job: one chunk's time limit (5 min), 4 ranks
    for stage_jobs in label.values():
        for job in stage_jobs:
            assert (job["Partition"], job["Account"], job["NumTasks"], job["CPUs/Task"],
                    job["Timelimit"]) == ("cpu", "testacct", "4", "1", "00:05:00"), job
    # the 2 chunks of iteration 1 side by side: 8 of the node's 10 CPUs, the
    # other 2 enough for what the timeout test's campaign may run meanwhile
    # (its label job, or its 2 members' training, 1 CPU each)
    done = [j for j in label["iter_001"] if j["State"] == "COMPLETED"]
    assert len(done) == 2 and overlap(*done), [(j["JobID"], j["Start"], j["End"]) for j in done]
    # inside a label job, 2 singlepoints at once: CP2K steps of 2 ranks that overlap
    for job in label["iter_000"]:
        steps = job_steps(slurm_env, job["JobIDRaw"], "cp2k")
        assert len(steps) == 2 and all(st["NTasks"] == "2" and st["AllocCPUS"] == "2"
                                       for st in steps), steps
        assert overlap(*steps), steps
    # hybrid MPI/OpenMP (e0s: 2 ranks x 2 threads): srun -c 2, a step of 2 tasks on 4 CPUs
    assert [j["Timelimit"] for j in jobs["e0s"]] == ["00:05:00"]
    e0s_steps = job_steps(slurm_env, jobs["e0s"][0]["JobIDRaw"], "cp2k")
    assert e0s_steps and all((st["NTasks"], st["AllocCPUS"]) == ("2", "4") for st in e0s_steps), \
        e0s_steps
    assert "run as: srun -n 2 -c 2 cp2k" in (res / "logs" / "e0s.log").read_text()
    # the committee: both members at once on 2 GPUs (15 min), then evaluate (15 min)
    for job in jobs["committee_000"] + jobs["committee_001"]:
        assert (job["Partition"], job["Account"], job["Timelimit"]) == \
            ("gpu", "testacct", "00:30:00"), job
        assert "gres/gpu=2" in job["ReqTRES"], job  # also for jobs cancelled while pending
        if job["State"] == "COMPLETED":
            assert "gres/gpu=2" in job["AllocTRES"], job
    assert [j["State"] for j in jobs["committee_001"]] == ["COMPLETED"]
    assert "training members [0, 1] at once" in \
        (res / "logs" / "train" / "iter_001_member_0.log").read_text()
    for job in jobs["sample"]:  # no set-resources: the rule's own runtime (config: 30 min)
        assert (job["Partition"], job["Timelimit"], job["State"]) == \
            ("cpu", "00:30:00", "COMPLETED"), job

    # CP2K ran under srun with 2 of the job's 4 MPI ranks, 2 structures at once
    label_log = (res / "logs" / "label" / "iter_001_chunk_0.log").read_text()
    assert "run as: srun --exact -n 2 -c 1 cp2k -i label.inp -o label.out" in label_log
    assert "2 structures at once" in label_log
    out = next(res.glob("iter_001/label/work_0/*/label.out")).read_text()
    assert re.search(r"Total number of message passing processes\s+2\n", out)
    print(f"xTB campaign through SLURM (with kill + rerun): {wall:.0f} s")


def test_timeout_is_resubmitted_with_more_time(slurm_env, timeout_run):
    proc, wd = timeout_run
    rc = proc.wait(timeout=900)
    log = (wd / "snakemake.out").read_text()
    assert rc == 0, log[-5000:]
    assert "SLURM status is: 'TIMEOUT'" in log
    label = [j for j in jobs_by_rule(slurm_env, log)["label"]
             if "iter_000" in j["Comment"]]
    assert [(j["State"], j["Timelimit"]) for j in label] == \
        [("TIMEOUT", "00:01:00"), ("COMPLETED", "00:02:00")], label
    # 15 structures x 8 s do not fit in 2 minutes: the retry reused the
    # structures the killed attempt had finished
    assert len(list((wd / "results" / "iter_000" / "label" / "work_0").glob("*/result.extxyz"))) == 15
    assert pd.read_csv(wd / "results" / "campaign.csv")["iteration"].tolist() == [0]
