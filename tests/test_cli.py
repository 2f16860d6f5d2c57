"""The `alflow` command: status of a running, killed or finished campaign, and
the report of its finished iterations."""
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alflow import config as alcfg
from alflow.status import campaign_status, format_status, reported_iterations
from workflow import REPO, SNAKEMAKE, make_campaign

ALFLOW = str(Path(sys.executable).parent / "alflow")


def mark_incomplete(workdir: Path, output: str) -> None:
    """What Snakemake's file persistence writes when a job starts."""
    d = workdir / ".snakemake" / "incomplete"
    d.mkdir(parents=True, exist_ok=True)
    (d / base64.urlsafe_b64encode(output.encode()).decode()).write_text("{}")


def fake_iteration(results: Path, i: int, done_stages: list[str]) -> None:
    d = results / f"iter_{i:03d}"
    files = {
        "sample": ["sample/pack_0.xyz", "sample/pack_1.xyz"],
        "select": ["select/stats.json"],
        "label": ["label/chunk_0.xyz"],
        "calibrate": ["calibration.json"],
        "dataset": ["dataset/summary.json"],
        "train": ["models/member_0.model", "models/member_1.model"],
        "evaluate": ["metrics.json"],
    }
    content = {
        "select/stats.json": {"trust_lo": 0.05, "trust_hi": 0.9, "converged": False},
        "calibration.json": {"audit": {"rmse": 250.0, "upper": 310.0}, "converged": False},
        "dataset/summary.json": {"n_train": 28, "n_valid": 4},
        "metrics.json": {"force_rmse_meV_per_A": 123.4},
    }
    for stage in done_stages:
        for f in files[stage]:
            (d / f).parent.mkdir(parents=True, exist_ok=True)
            (d / f).write_text(json.dumps(content.get(f, {})))


def test_status_from_files_with_a_job_marked_running(tmp_path):
    results = tmp_path / "results"
    fake_iteration(results, 0, ["label", "dataset", "train", "evaluate"])
    fake_iteration(results, 1, ["sample", "select", "label", "calibrate", "dataset", "train"])
    (results / "iter_001" / "models" / "member_1.model").unlink()
    mark_incomplete(tmp_path, "results/iter_001/models/member_1.model")
    table, info = campaign_status(results)
    row = table.set_index("iteration").loc[1]
    assert row["train"] == "1 done, 1 running" and row["evaluate"] == ""
    assert row["sample"] == "2 done" and row["calibrate"] == "done"
    assert row["labels"] == 32 and row["trust_hi"] == 0.9 and row["converged"] is False
    assert table.set_index("iteration").loc[0, "audit_rmse"] == 250.0  # measured in iteration 1
    assert table.set_index("iteration").loc[0, "test_rmse"] == 123.4
    assert info["running"] == ["iter_001/models/member_1.model"]
    assert info["snakemake"] is False  # no snakemake works in tmp_path
    text = format_status(table, info, "results")
    assert "INTERRUPTED" in text and "1 done, 1 running" in text


def test_status_of_a_missing_campaign_says_where_it_looked(tmp_path):
    proc = subprocess.run([ALFLOW, "status", str(tmp_path / "nowhere")], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "no campaign results in" in proc.stderr


def test_reported_iterations_needs_every_figure(tmp_path):
    assert reported_iterations(tmp_path) == -1
    for i, names in ((0, ("learning_curve", "parity", "dataset", "compute")),
                     (1, ("learning_curve", "parity", "dataset", "compute", "deviation",
                          "calibration"))):
        d = tmp_path / "report" / f"iter_{i:03d}"
        d.mkdir(parents=True)
        for name in names:
            (d / f"{name}.svg").write_text("<svg/>")
    assert reported_iterations(tmp_path) == 0  # iteration 1 lacks exploration.svg
    (tmp_path / "report" / "iter_001" / "exploration.svg").write_text("<svg/>")
    assert reported_iterations(tmp_path) == 1


def test_elements_are_read_once_and_cached_for_jobs(tmp_path):
    structures = tmp_path / "s.xyz"
    structures.write_text((REPO / "tests" / "data" / "cu_16.xyz").read_text())
    config = {"structures": str(structures), "bootstrap": {"dataset": None},
              "test_set": {"path": None}}
    cache = tmp_path / "cache" / "elements.json"
    assert alcfg.elements(config, cache) == ["Cu"]
    stored = json.loads(cache.read_text())
    stored["elements"] = ["Xx"]  # a job trusts the main process's answer...
    cache.write_text(json.dumps(stored))
    assert alcfg.elements(config, cache, compute=False) == ["Xx"]
    structures.write_text(structures.read_text() + "\n")  # ...while the file is unchanged
    assert alcfg.elements(config, cache, compute=False) == ["Cu"]


@pytest.mark.slow
def test_status_of_a_killed_campaign(tmp_path):
    """A real campaign killed during its first training: the status says what
    was done, what was running, and that nothing runs any more."""
    wd = make_campaign(tmp_path, "emt", iterations=1, committee={"epochs": 200})
    proc = subprocess.Popen([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile",
                             "config.yaml", "--cores", "2"], cwd=wd, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        marker = wd / "results" / "iter_000" / "dataset" / "summary.json"
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert marker.exists(), "the campaign never reached training"
        time.sleep(3)  # the training jobs start
        live = subprocess.run([ALFLOW, "status", "results"], cwd=wd, capture_output=True,
                              text=True)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert live.returncode == 0, live.stderr
    assert "running" in live.stdout and "INTERRUPTED" not in live.stdout
    after = subprocess.run([ALFLOW, "status", "results"], cwd=wd, capture_output=True, text=True)
    assert after.returncode == 0, after.stderr
    assert "INTERRUPTED" in after.stdout
    table, info = campaign_status(wd / "results")
    row = table.set_index("iteration").loc[0]
    assert row["dataset"] == "done" and "running" in row["train"]
    assert any(p.startswith("iter_000/models/member_") for p in info["running"])
    assert row["labels"] > 0 and list(table["iteration"]) == [0]
