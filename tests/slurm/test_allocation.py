"""The campaign inside one SLURM allocation (profiles/slurm-allocation): one
sbatch driver job runs snakemake with the local executor, and every CP2K
singlepoint is a job step of that job (`srun --exact`), as SLURM records it."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from slurmtools import run_ok
from workflow import REPO, SNAKEMAKE, make_campaign

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_campaign_inside_one_allocation(slurm_env, tmp_path):
    wd = make_campaign(tmp_path, "xtb", iterations=0, committee={"device": "cpu"})
    driver = wd / "driver.sh"
    driver.write_text(
        "#!/bin/bash\nset -e\n"
        f"cd {wd}\n"
        f"{SNAKEMAKE} -s {REPO / 'Snakefile'} --configfile config.yaml "
        f"--profile {REPO / 'profiles' / 'slurm-allocation'} --cores $SLURM_NTASKS\n")
    out = run_ok(["sbatch", "--parsable", "--wait", "-n", "4", "-t", "30", "-A", "testacct",
                  "-p", "cpu", "-J", "alflow-driver", "-o", str(wd / "driver.out"),
                  str(driver)], slurm_env, timeout=1800)
    job = out.strip().split(";")[0]
    log = (wd / "driver.out").read_text()
    assert "Finished jobid" in log and "submitted with SLURM jobid" not in log
    assert list(pd.read_csv(wd / "results" / "campaign.csv")["iteration"]) == [0]
    rows = run_ok(["sacct", "-P", "-n", "-j", job, "-o", "JobID,JobName,NTasks,State"],
                  slurm_env).splitlines()
    steps = [r.split("|") for r in rows if re.match(rf"{job}\.\d+\|", r)]
    cp2k = [s for s in steps if s[1] == "cp2k"]
    # one step per CP2K run: 2 E0s, 8 bootstrap and 4 test structures
    assert len(cp2k) >= 2 + 8 + 4, steps
    assert all(s[2] == "2" and s[3] == "COMPLETED" for s in cp2k), cp2k
    top = [r.split("|") for r in rows if r.startswith(f"{job}|")][0]
    assert top[1] == "alflow-driver" and top[3] == "COMPLETED"
