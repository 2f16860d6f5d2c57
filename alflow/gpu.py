"""One GPU per job on a multi-GPU machine or inside one multi-GPU allocation.

Snakemake counts GPUs (``--resources gpu=N``) but does not say *which* GPU a
job may use. Before a job touches CUDA it claims free devices from the pool
visible to the workflow by taking an exclusive ``flock`` on one file per
device, and sets ``CUDA_VISIBLE_DEVICES`` to them. The kernel drops the lock
when the process ends, even when it is killed, so a slot can never leak.

When the pool holds no more devices than the job asks for (a batch job that
SLURM gave exactly its own GPUs, or a one-GPU workstation) nothing is locked:
every visible device is the job's.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def visible_devices(env: dict | None = None) -> list[str]:
    """The GPUs this workflow may use: CUDA_VISIBLE_DEVICES, else what nvidia-smi lists."""
    env = os.environ if env is None else env
    given = env.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [d.strip() for d in given.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                         capture_output=True, text=True, check=False)
    return out.stdout.split() if out.returncode == 0 else []


def lock_dir(env: dict | None = None) -> Path:
    """Node-local directory of slot locks, separate per SLURM allocation."""
    env = os.environ if env is None else env
    scope = env.get("SLURM_JOB_ID", "local")
    return Path(tempfile.gettempdir()) / f"alflow-gpu-slots-{os.getuid()}-{scope}"


class GpuSlots:
    """Claimed devices; keep the object alive as long as the job uses them."""

    def __init__(self, devices: list[str], handles: list):
        self.devices = devices
        self._handles = handles

    def release(self) -> None:
        for handle in self._handles:
            handle.close()
        self._handles = []

    @property
    def cuda_visible_devices(self) -> str:
        return ",".join(self.devices)


def claim(n: int, pool: list[str] | None = None, directory: Path | None = None,
          timeout: float = 3600, poll: float = 0.5) -> GpuSlots:
    """Claim ``n`` devices of ``pool`` (default: :func:`visible_devices`).

    Waits (up to ``timeout`` s) while all are taken: Snakemake's GPU count
    should make that rare, but another workflow on the same machine may hold
    them. Raises RuntimeError when the pool is smaller than ``n``.
    """
    pool = visible_devices() if pool is None else pool
    if n <= 0:
        return GpuSlots([], [])
    if len(pool) < n:
        raise RuntimeError(f"job asks for {n} GPU(s) but only {len(pool)} are visible: {pool}")
    if len(pool) == n:
        return GpuSlots(list(pool), [])
    directory = lock_dir() if directory is None else directory
    directory.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        devices, handles = [], []
        for device in pool:
            handle = open(directory / f"gpu-{device}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            devices.append(device)
            handles.append(handle)
            if len(devices) == n:
                return GpuSlots(devices, handles)
        for handle in handles:
            handle.close()
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {n} free GPU(s) of {pool} within {timeout} s")
        time.sleep(poll)


def resolve_device(device: str, n_gpus: int) -> str:
    """'auto' means CUDA when the job was given GPUs, else the CPU."""
    if device == "auto":
        return "cuda" if n_gpus > 0 else "cpu"
    return device


def pin(n: int, device: str) -> GpuSlots:
    """For a job about to use ``device`` ('cpu' or 'cuda') with ``n`` GPUs:
    claim them and export CUDA_VISIBLE_DEVICES to this process and its children."""
    if device != "cuda" or n <= 0:
        return GpuSlots([], [])
    slots = claim(n)
    os.environ["CUDA_VISIBLE_DEVICES"] = slots.cuda_visible_devices
    return slots
