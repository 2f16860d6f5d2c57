"""The campaign through a real SLURM cluster (slurmctld + slurmd + slurmdbd on
localhost, tests/slurm/cluster.sh) with the real snakemake-executor-plugin-slurm
and the profile tests/slurm/profile: no mock of sbatch.

Checked against what SLURM itself recorded (sacct, scontrol):
- with the packing settings of the shipped template profiles/slurm (groups with
  {it}/{stage} in their names, group-components, the sample packs as a job
  array) and committee.train_in_one_job, an iteration is 3 batch jobs: the
  committee trained (both members at once, 2 GPUs) and evaluated, one array of
  walker packs, all label chunks in one job;
- those jobs get the profile's partition, time limit (summed over the jobs of
  a group), tasks, cpus-per-task, GPUs and account; CP2K runs under srun with
  2 MPI ranks;
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

from slurmtools import packing_args, sacct, scontrol, submitted
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
        m = re.match(r"rule_(committee_\d+|label_(?:iter_\d+|test)|[a-z0-9_]+?)(_wildcards_.*|_.*)?$",
                     row["Comment"])
        out.setdefault(m.group(1), []).append(row)
    return out


def test_campaign_through_slurm_survives_a_kill(slurm_env, timeout_run, tmp_path):
    wd = make_campaign(tmp_path, "xtb", committee={"device": "cpu", "train_in_one_job": True})
    res = wd / "results"
    chunks = [res / "iter_000" / "label" / f"chunk_{c}.xyz" for c in range(4)]
    packed = packing_args(ranks=2)

    # 1. start, and kill snakemake (SIGINT: it cancels its SLURM jobs) once
    #    the bootstrap is labelled and training has been submitted
    first = (wd / "first.out").open("w")
    t0 = time.monotonic()
    proc = subprocess.Popen(snakemake(wd, *packed), cwd=wd, env=slurm_env, stdout=first,
                            stderr=subprocess.STDOUT)
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
    assert "group_label_iter_000" not in log2  # no label job of iteration 0 resubmitted
    table = pd.read_csv(res / "campaign.csv")
    assert list(table["iteration"]) == [0, 1]

    # 3. what SLURM received: iteration 1 is three batch jobs, one of them an array
    jobs = jobs_by_rule(slurm_env, (wd / "first.out").read_text() + log2)
    assert set(jobs) == {"e0s", "label_test", "label_iter_000", "committee_000", "sample",
                         "label_iter_001", "committee_001"}, set(jobs)
    iteration_1 = jobs["sample"] + jobs["label_iter_001"] + jobs["committee_001"]
    assert len({j["JobID"].split("_")[0] for j in iteration_1}) == 3, iteration_1
    assert sorted(j["JobID"].split("_")[1] for j in jobs["sample"]) == ["1", "2"]  # the 2 packs
    # label chunks of a stage in one job, one after another on the same 2 ranks:
    # the time limit is the sum of the chunks' (5 min each)
    for stage, n_chunks in (("label_test", 2), ("label_iter_000", 4), ("label_iter_001", 2)):
        for job in jobs[stage]:
            assert (job["Partition"], job["Account"], job["NumTasks"], job["CPUs/Task"]) == \
                ("cpu", "testacct", "2", "1"), job
            assert job["Timelimit"] == f"00:{5 * n_chunks:02d}:00", job
    assert [j["Timelimit"] for j in jobs["e0s"]] == ["00:05:00"]
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

    # CP2K ran under srun with the profile's 2 MPI ranks
    label_log = (res / "logs" / "label" / "iter_001_chunk_0.log").read_text()
    assert "run as: srun -n 2 -c 1 cp2k -i label.inp -o label.out" in label_log
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
