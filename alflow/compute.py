"""Core-hours and GPU-hours of every job, from Snakemake's benchmark files.

With ``--benchmark-extended`` (set in every profile) each benchmark file also
records the job's ``threads`` and ``resources`` (a Python dict: ``tasks``,
``cpus_per_task``, ``gpu``, ``_cores``, ...), so a job's wall time can be
weighed by what it held. Files without those columns (older campaigns, a run
without the flag) count one core and no GPU, and say so (``resources_known``).
"""
from __future__ import annotations

import ast
import csv
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

BENCH_STAGE = re.compile(r"(iter_\d{3}|test)")
# Rules that run the reference as `{mpi} -n {tasks}` with cpus_per_task OpenMP threads each.
MPI_RULES = ("label", "e0s", "test_md")
# Rules with a benchmark file of their own (no wildcards) that run after the last iteration.
AFTER_LOOP = ("validate", "final")
COLUMNS = ["rule", "stage", "iteration", "seconds", "cpu_seconds", "max_rss_mb", "cores",
           "gpus", "core_hours", "gpu_hours", "resources_known"]


def _number(value, default=None):
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if np.isfinite(out) else default


def job_cores(rule: str, threads, resources: dict | None) -> tuple[float, float]:
    """(cores, GPUs) a job held: MPI ranks x OpenMP threads for the reference
    rules, else its threads (or the ``_cores`` resource), at least
    ``cpus_per_gpu`` per GPU where a profile asks for that; GPUs from the
    ``gpu`` resource."""
    res = resources or {}
    gpus = _number(res.get("gpu"), 0.0)
    tasks, per_task = _number(res.get("tasks")), _number(res.get("cpus_per_task"))
    if rule in MPI_RULES and tasks and per_task:
        cores = tasks * per_task
    else:
        cores = _number(threads) or _number(res.get("_cores")) or 1.0
        cores = max(cores, (_number(res.get("cpus_per_gpu"), 0.0) or 0.0) * gpus)
    return cores, gpus


def _resources(text) -> dict | None:
    try:
        value = ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, dict) else None


def read_benchmarks(root: str | os.PathLike, skip=("report", "campaign")) -> pd.DataFrame:
    """Wall and CPU time, cores and GPUs of every finished job from Snakemake's
    benchmark files under ``root`` (``<rule>/<wildcards>.tsv`` or ``<rule>.tsv``):
    columns ``rule``, ``stage`` (``iter_NNN``, ``test``, ``setup`` or
    ``validation``), ``iteration`` (-1 outside the iterations), ``seconds``,
    ``cpu_seconds``, ``max_rss_mb``, ``cores``, ``gpus``, ``core_hours``,
    ``gpu_hours`` and ``resources_known`` (False: no extended columns, counted
    as 1 core, 0 GPU). Lines of a job that ran several times (``repeat``) are
    averaged. Rules in ``skip`` (the report's own) are left out."""
    root = Path(root)
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        rel = path.relative_to(root)
        rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if rule in skip:
            continue
        match = BENCH_STAGE.search(rel.stem) if len(rel.parts) > 1 else None
        stage = match.group(1) if match else "validation" if rule in AFTER_LOOP else "setup"
        try:
            table = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE)
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            continue  # a job killed while writing it: nothing to count
        if table.empty or "s" not in table:
            continue
        resources = _resources(table["resources"].iloc[0]) if "resources" in table else None
        known = resources is not None
        name = str(table["rule_name"].iloc[0]) if "rule_name" in table else rule
        cores, gpus = job_cores(name, table["threads"].iloc[0] if known and "threads" in table
                                else None, resources)
        seconds = float(pd.to_numeric(table["s"], errors="coerce").mean())
        rows.append({
            "rule": rule, "stage": stage,
            "iteration": int(stage[5:]) if stage.startswith("iter_") else -1,
            "seconds": seconds,
            "cpu_seconds": float(pd.to_numeric(table.get("cpu_time"), errors="coerce").mean())
            if "cpu_time" in table else np.nan,
            "max_rss_mb": float(pd.to_numeric(table.get("max_rss"), errors="coerce").mean())
            if "max_rss" in table else np.nan,
            "cores": cores, "gpus": gpus,
            "core_hours": seconds * cores / 3600, "gpu_hours": seconds * gpus / 3600,
            "resources_known": known,
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def hours_per_iteration(bench: pd.DataFrame, iterations) -> dict[int, dict]:
    """{iteration: {core_hours, gpu_hours}} summed over its jobs; set-up and
    test-set jobs count to iteration 0, jobs after the loop (validation) to
    none. Every iteration in ``iterations`` gets a row (0 without jobs)."""
    b = bench[bench["stage"] != "validation"]
    sums = b.assign(iteration=b["iteration"].clip(lower=0)).groupby("iteration")[
        ["core_hours", "gpu_hours"]].sum()
    return {int(i): {k: float(sums[k].get(i, 0.0)) for k in ("core_hours", "gpu_hours")}
            for i in iterations}
