"""Every shipped profile dry-runs on a machine without that cluster, and maps
each rule's resources as documented."""
import re
import subprocess

import pytest

from conftest import REPO
from workflow import SNAKEMAKE, job_counts

PROFILES = sorted(p.name for p in (REPO / "profiles").iterdir() if (p / "config.yaml").exists())


def dry_run(profile, tmp_path):
    """The demo config in a fresh directory, with no --config on the command
    line (it would replace the profile's own `config:` entries)."""
    (tmp_path / "config").symlink_to(REPO / "config")
    proc = subprocess.run(
        [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--profile", str(REPO / "profiles" / profile),
         "--configfile", "config/demo.yaml", "-n"], cwd=tmp_path, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


SLURM_PROFILES = ("hortense", "ugent-tier2", "slurm")


def resources_by_rule(out):
    """{rule: resources line} of the first job of each rule in a dry run."""
    found = {}
    for block in out.split("rule ")[1:]:
        rule = block.split(":", 1)[0].strip()
        m = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE)
        if m and rule not in found:
            found[rule] = m.group(1)
    return found


def test_all_profiles_are_shipped():
    assert {"local", "hortense", "ugent-tier2", "slurm"} <= set(PROFILES)
    assert "default" not in PROFILES  # Snakemake would apply it to every run


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_dry_runs_the_whole_campaign(profile, tmp_path):
    out = dry_run(profile, tmp_path)
    counts = job_counts(out)
    if profile in SLURM_PROFILES:  # committee.train_in_one_job, groups (README: fewer jobs)
        assert counts["train_committee"] == 4 and "train" not in counts
        groups = set(re.findall(r"Group job (\S+) ", out))
        # label chunks are jobs of their own: a group's jobs would take turns
        assert groups == {f"committee_{i:03d}" for i in range(4)}, groups
    else:
        assert counts["train"] == 4 * 2 and "Group job" not in out
    assert counts["sample"] == 3 * 2 and counts["select"] == 3
    assert counts["label"] == 2 + 2 + 3 * 2  # bootstrap 16/8, test 16/8, 3 x ceil(16/8)
    assert counts["validate"] == 1 and counts["final"] == 1  # the final committee's MD, the model


def test_hortense_maps_resources(tmp_path):
    res = resources_by_rule(dry_run("hortense", tmp_path))
    label, train = res["label"], res["train_committee"]
    for expected in ("tasks=128", "concurrent=2", "cpus_per_task=1", "mpi=srun", "slurm_partition=cpu_rome",
                     "clusters=dodrio", "slurm_account=2025_000", "runtime=120"):
        assert expected in label, (expected, label)
    for expected in ("slurm_partition=gpu_rome_a100", "gpu=2", "cpus_per_gpu=12",
                     "clusters=dodrio", "runtime=240"):
        assert expected in train, (expected, train)
    assert "gpu=1" in res["sample"] and "gpu=1" in res["validate"]  # MD with the committee


def test_local_profile_uses_no_cluster(tmp_path):
    res = resources_by_rule(dry_run("local", tmp_path))
    assert "slurm_partition" not in res["label"] and "mpi=mpirun" in res["label"]


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_reruns_on_science_only(profile):
    """Snakemake's software-env and code triggers stay off: a CP2K module, a
    conda env or a refactor of the workflow's scripts is not science (the
    science of every rule is in its params, its inputs are the data)."""
    import yaml

    cfg = yaml.safe_load((REPO / "profiles" / profile / "config.yaml").read_text())
    assert sorted(cfg["rerun-triggers"]) == ["input", "mtime", "params"]


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_records_job_resources_in_benchmarks(profile):
    """--benchmark-extended: every benchmark file has the job's threads and
    resources, from which the report counts core- and GPU-hours."""
    import yaml

    cfg = yaml.safe_load((REPO / "profiles" / profile / "config.yaml").read_text())
    assert cfg["benchmark-extended"] is True
