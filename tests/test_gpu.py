"""GPU slot pinning. This machine has no GPU: the device pool is given
explicitly (as CUDA_VISIBLE_DEVICES would list it); the locking is real."""
import os
import subprocess
import sys
import time

import pytest

from alflow import gpu


def test_pool_from_cuda_visible_devices():
    assert gpu.visible_devices({"CUDA_VISIBLE_DEVICES": "0,1,3"}) == ["0", "1", "3"]
    assert gpu.visible_devices({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert gpu.visible_devices({"CUDA_VISIBLE_DEVICES": "-1"}) == []


def test_lock_dir_is_per_allocation():
    assert gpu.lock_dir({"SLURM_JOB_ID": "42"}) != gpu.lock_dir({})


def test_distinct_slots_and_release(tmp_path):
    pool = ["0", "1", "2", "3"]
    a = gpu.claim(1, pool, tmp_path)
    b = gpu.claim(2, pool, tmp_path)
    assert len(set(a.devices + b.devices)) == 3
    c = gpu.claim(1, pool, tmp_path)
    assert set(c.devices).isdisjoint(a.devices + b.devices)
    with pytest.raises(TimeoutError):
        gpu.claim(1, pool, tmp_path, timeout=0.3, poll=0.1)
    b.release()
    d = gpu.claim(2, pool, tmp_path, timeout=1)
    assert sorted(d.devices) == sorted(b.devices)


def test_whole_pool_is_used_without_locking(tmp_path):
    slots = gpu.claim(2, ["0", "1"], tmp_path)
    assert slots.cuda_visible_devices == "0,1" and not list(tmp_path.iterdir())
    with pytest.raises(RuntimeError, match="only 2 are visible"):
        gpu.claim(3, ["0", "1"], tmp_path)


def test_cpu_jobs_claim_nothing(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu.pin(1, "cpu").devices == []
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


HOLDER = """
import sys, time
from pathlib import Path
from alflow import gpu
s = gpu.claim(1, ["0", "1"], Path(sys.argv[1]))
print(s.devices[0], flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_concurrent_processes_get_different_gpus_and_a_killed_job_frees_its_slot(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), "30"],
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        got = sorted(p.stdout.readline().strip() for p in procs)
        assert got == ["0", "1"]
        # both slots taken: a third job waits ...
        with pytest.raises(TimeoutError):
            gpu.claim(1, ["0", "1"], tmp_path, timeout=0.5, poll=0.1)
        procs[0].kill()  # ... until one is killed (e.g. by SLURM): its lock is gone
        procs[0].wait()
        t0 = time.monotonic()
        slot = gpu.claim(1, ["0", "1"], tmp_path, timeout=5, poll=0.1)
        assert time.monotonic() - t0 < 5 and slot.devices[0] in got
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_auto_device_follows_the_jobs_gpus():
    assert gpu.resolve_device("auto", 1) == "cuda"
    assert gpu.resolve_device("auto", 0) == "cpu"
    assert gpu.resolve_device("cpu", 2) == "cpu"
