"""Shared fixtures: tiny labelled Cu datasets (ASE's EMT as ground truth) and a
tiny real MACE committee trained once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.geometry import find_mic

from alflow import ENERGY_KEY, FORCES_KEY, STRESS_KEY
from alflow.io import write_frames

REPO = Path(__file__).resolve().parent.parent


def emt_label(atoms):
    atoms = atoms.copy()
    atoms.calc = EMT()
    e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = None
    atoms.info[ENERGY_KEY], atoms.arrays[FORCES_KEY], atoms.info[STRESS_KEY] = e, f, s
    return atoms


def cu_frames(n, rattle=0.05, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a = bulk("Cu", "fcc", a=3.61 * (1 + 0.01 * rng.standard_normal()), cubic=True)
        a = a.repeat((2, 2, 1))
        a.positions += rng.normal(0, rattle, a.positions.shape)
        a.info["origin"] = f"test:{seed}:{k}"
        out.append(emt_label(a))
    return out


def rms_displacement(a, b) -> float:
    """RMS displacement (Å, minimum image) between two frames of the same atoms."""
    d, _ = find_mic(a.positions - b.positions, a.cell, a.pbc)
    return float(np.sqrt((d ** 2).sum(axis=1).mean()))


@pytest.fixture(scope="session")
def cu_dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("cu_data")
    write_frames(d / "train.xyz", cu_frames(16, seed=1))
    write_frames(d / "valid.xyz", cu_frames(4, seed=2))
    write_frames(d / "test.xyz", cu_frames(6, rattle=0.1, seed=3))
    return d


TINY_MACE = {"r_max": 3.5, "num_channels": 8, "max_L": 0, "num_interactions": 1,
             "correlation": 1, "batch_size": 4, "valid_batch_size": 8}


@pytest.fixture(scope="session")
def cu_committee(cu_dataset, tmp_path_factory):
    """Two real MACE models trained for a few epochs with different seeds."""
    from alflow.training import train_member

    d = tmp_path_factory.mktemp("cu_committee")
    paths = []
    for m in range(2):
        out = d / f"member_{m}.model"
        train_member(output=str(out), work_dir=str(d / f"work_{m}"), log_file=str(d / f"{m}.log"),
                     threads=1, name=f"member_{m}", train_file=str(cu_dataset / "train.xyz"),
                     valid_file=str(cu_dataset / "valid.xyz"), e0s={"Cu": 0.0}, seed=m,
                     device="cpu", dtype="float64", epochs=4, hyper=TINY_MACE)
        paths.append(str(out))
    return paths


@pytest.fixture(autouse=True)
def _few_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))


@pytest.fixture(scope="session")
def slurm_env(tmp_path_factory):
    """Environment of a running one-node SLURM cluster (tests/slurm/cluster.sh):
    os.environ + SLURM_CONF + this venv on PATH. Started once per session, or
    reused from $ALFLOW_SLURM_STATEDIR (then left running)."""
    import re
    import subprocess
    import sys

    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("the local SLURM test cluster needs root on Linux")
    cluster_sh = REPO / "tests" / "slurm" / "cluster.sh"

    def cluster(action, statedir):
        return subprocess.run(["bash", str(cluster_sh), action, str(statedir)],
                              capture_output=True, text=True, timeout=900, check=False)

    given = os.environ.get("ALFLOW_SLURM_STATEDIR")
    statedir = Path(given) if given else tmp_path_factory.mktemp("slurm")
    was_running = bool(given) and cluster("status", statedir).returncode == 0
    res = cluster("start", statedir)
    if res.returncode != 0:
        if not was_running:
            cluster("stop", statedir)
        pytest.fail(f"cluster.sh start failed:\n{res.stdout}\n{res.stderr[-6000:]}")
    m = re.search(r"^export SLURM_CONF=(\S+)$", res.stdout, re.M)
    assert m, res.stdout
    env = dict(os.environ, SLURM_CONF=m.group(1))
    # jobs run with --export=ALL: they must find this interpreter's snakemake
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    yield env
    if not was_running:
        res = cluster("stop", statedir)
        assert res.returncode == 0, res.stderr
