"""Helpers for tests that run the real `snakemake` command on tiny campaigns."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def make_campaign(tmp_path: Path, base: str, **overrides) -> Path:
    """A working directory with config.yaml from tests/data/<base>.yaml (+ overrides)."""
    cfg = yaml.safe_load((REPO / "tests" / "data" / f"{base}.yaml").read_text())
    for key, value in overrides.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    for key in ("structures",):
        cfg[key] = str(REPO / cfg[key]) if not os.path.isabs(cfg[key]) else cfg[key]
    ref = cfg.setdefault("reference", {})
    if "cp2k" in ref and "template" in ref["cp2k"]:
        ref["cp2k"]["template"] = str(REPO / ref["cp2k"]["template"])
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


def run(workdir: Path, *args: str, check: bool = True, timeout: int = 900,
        profile: str | None = None) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml"]
    cmd += ["--profile", str(REPO / "profiles" / profile)] if profile else ["--cores", "2"]
    proc = subprocess.run(cmd + list(args), cwd=workdir, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table into {rule: count}."""
    table = output.split("Job stats:")[-1]
    counts = {}
    for line in table.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)\s*$", line)
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts
