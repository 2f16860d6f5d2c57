"""Where a campaign stands, read from its files alone: while Snakemake runs,
after it finished, and after a crash.

Per iteration: which stages are done (their products exist), which are
running (Snakemake's incomplete markers name outputs whose job started and
has not finished), the labels, the audit and test force RMSE, the trust
levels and whether the campaign converged. Nothing here imports Snakemake or
torch: it is meant for a login node, next to a running campaign.
"""
from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pandas as pd

from .io import read_json
from .metrics import campaign_row

#: Stages of an iteration, in the order they run, with the products that
#: show one is done (glob patterns under iter_{i}/).
STAGES = {
    "sample": "sample/pack_*.xyz",
    "select": "select/stats.json",
    "label": "label/chunk_*.xyz",
    "calibrate": "calibration.json",
    "dataset": "dataset/summary.json",
    "train": "models/member_*.model",
    "evaluate": "metrics.json",
}
_ITER = re.compile(r"(?:^|/)iter_(\d{3})/(.+)$")


def incomplete_outputs(workdir: str | os.PathLike) -> list[Path]:
    """Outputs that Snakemake marked incomplete in ``workdir``: their job
    started and has not finished (it runs, or was killed). Snakemake's file
    persistence keeps one marker per output, named by the base64 of its path
    (long names split into directories whose parts start with '@')."""
    root = Path(workdir) / ".snakemake" / "incomplete"
    out = []
    if not root.is_dir():
        return out
    for marker in root.rglob("*"):
        if marker.is_dir():
            continue
        parts = [p.lstrip("@") for p in marker.relative_to(root).parts]
        try:
            path = base64.urlsafe_b64decode("".join(parts).encode()).decode()
        except (ValueError, UnicodeDecodeError):
            continue
        out.append(Path(path) if os.path.isabs(path) else Path(workdir) / path)
    return out


def snakemake_running(workdir: str | os.PathLike) -> bool | None:
    """Whether a Snakemake process on this machine works in ``workdir``
    (from /proc; None where that cannot be read)."""
    target = Path(workdir).resolve()
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for pid in proc.iterdir():
        if not pid.name.isdigit() or int(pid.name) == os.getpid():
            continue
        try:
            cmd = (pid / "cmdline").read_bytes().split(b"\0")
            if not any(b"snakemake" in Path(c.decode(errors="ignore")).name.encode()
                       for c in cmd[:2]):
                continue
            if Path(os.readlink(pid / "cwd")).resolve() == target:
                return True
        except OSError:
            continue
    return False


def find_workdir(results: Path) -> Path:
    """The directory Snakemake ran in: the nearest one at or above
    ``results`` with a .snakemake directory (else the current one)."""
    for d in [results.resolve(), *results.resolve().parents]:
        if (d / ".snakemake").is_dir():
            return d
    return Path.cwd()


def _stage_cell(done: int, running: int, single: bool) -> str:
    if running:
        return "running" if not done else f"{done} done, {running} running"
    if not done:
        return ""
    return "done" if single else f"{done} done"


def campaign_status(results: str | os.PathLike = "results",
                    workdir: str | os.PathLike | None = None) -> tuple[pd.DataFrame, dict]:
    """One row per iteration that has started, and what is running.

    Returns (table, info): ``info`` has ``running`` (paths of outputs being
    made, relative to ``results``), ``snakemake`` (True: a Snakemake process
    works in the campaign's directory; False: none does, so outputs marked
    running were interrupted) and the state of the test set and E0s."""
    results = Path(results)
    if not results.is_dir():
        raise FileNotFoundError(f"no campaign results in {results}/ (give the results directory: "
                                "the `results` key of the campaign's config)")
    workdir = Path(workdir) if workdir else find_workdir(results)
    running = []
    for path in incomplete_outputs(workdir):
        try:
            running.append(path.resolve().relative_to(results.resolve()))
        except ValueError:
            continue
    busy: dict[tuple[int, str], int] = {}
    for rel in running:
        m = _ITER.search(rel.as_posix())
        if m:
            stage = next((s for s, pattern in STAGES.items()
                          if Path(m.group(2)).match(pattern)), None)
            if stage:
                busy[int(m.group(1)), stage] = busy.get((int(m.group(1)), stage), 0) + 1
    rows = []
    iterations = sorted(int(p.name[5:]) for p in results.glob("iter_[0-9][0-9][0-9]") if p.is_dir())
    running_set = {results / r for r in running}
    for i in iterations:
        d = results / f"iter_{i:03d}"
        row: dict = {"iteration": i}
        for stage, pattern in STAGES.items():
            if i == 0 and stage in ("sample", "select", "calibrate"):
                row[stage] = "-"
                continue
            done = [p for p in d.glob(pattern) if p not in running_set]
            row[stage] = _stage_cell(len(done), busy.get((i, stage), 0), "*" not in pattern)
        rows.append(row | _numbers(results, i))
    table = pd.DataFrame(rows)
    info = {
        "running": [r.as_posix() for r in running],
        "snakemake": snakemake_running(workdir) if running else None,
        "test_set": "done" if list((results / "test" / "label").glob("chunk_*.xyz")) else "",
        "e0s": "done" if (results / "reference" / "e0s.json").exists() else "",
        "validation": "done" if (results / "validation" / "summary.json").exists() else "",
        "final": "done" if (results / "final" / "model_card.json").exists() else "",
    }
    return table, info


def _read(path: Path) -> dict | None:
    try:
        return read_json(path) if path.exists() else None
    except ValueError:  # being written (the workflow writes atomically; be safe anyway)
        return None


def _numbers(results: Path, i: int) -> dict:
    """Labels, trust levels, audit and test RMSE of iteration ``i`` from
    whatever of its JSON products exist (see metrics.campaign_row)."""
    d = results / f"iter_{i:03d}"
    nxt = results / f"iter_{i + 1:03d}"
    dataset = _read(d / "dataset" / "summary.json") or {}
    row = campaign_row(i, dataset, _read(d / "metrics.json") or {},
                       _read(d / "select" / "stats.json"), _read(d / "calibration.json"),
                       audit=(_read(nxt / "calibration.json") or {}).get("audit"))
    out = {
        "labels": row["n_labels"] if dataset else None,
        "trust_lo": row.get("trust_lo"),
        "trust_hi": row.get("trust_hi"),
        "audit_rmse": row.get("audit_force_rmse"),
        "audit_upper": row.get("audit_upper"),
        "test_rmse": row.get("force_rmse_meV_per_A"),
        "converged": row.get("converged"),
    }
    return out


def format_status(table: pd.DataFrame, info: dict, results: str | os.PathLike = "results") -> str:
    """The status as text for a terminal."""
    lines = [f"campaign in {results}/"]
    pre = ", ".join(f"{k.replace('_', ' ')}: {v or 'not yet'}" for k, v in info.items()
                    if k in ("e0s", "test_set"))
    lines.append(pre)
    if table.empty:
        lines.append("no iteration has started")
    else:
        shown = table.copy()
        for col in ("audit_rmse", "audit_upper", "test_rmse"):
            shown[col] = shown[col].map(lambda v: "" if v is None or pd.isna(v) else f"{v:.0f}")
        for col in ("trust_lo", "trust_hi"):
            shown[col] = shown[col].map(lambda v: "" if v is None or pd.isna(v) else f"{v:.3g}")
        shown["labels"] = shown["labels"].map(lambda v: "" if v is None or pd.isna(v) else
                                              str(int(v)))
        shown["converged"] = shown["converged"].map(
            lambda v: "" if v is None or pd.isna(v) else ("yes" if v else "no"))
        shown = shown.rename(columns={"audit_rmse": "audit RMSE", "audit_upper": "audit upper",
                                      "test_rmse": "test RMSE", "trust_lo": "trust lo",
                                      "trust_hi": "trust hi"})
        lines.append(shown.to_string(index=False))
        lines.append("RMSE: force, meV/Å; audit: of this iteration's committee, measured in the "
                     "next; trust levels: deviations, eV/Å")
    lines.append(f"validation: {info['validation'] or 'not yet'}, final model: "
                 f"{info['final'] or 'not yet'}")
    if info["running"]:
        if info["snakemake"] is False:
            lines.append(f"INTERRUPTED: no Snakemake process works in this campaign's directory, "
                         f"but {len(info['running'])} output(s) were being made when it stopped "
                         "(a crash, a kill, or a lost login session); run the same snakemake "
                         "command again: it reruns them (rerun-incomplete)")
        else:
            lines.append(f"running: {len(info['running'])} job output(s) being made")
    return "\n".join(lines)


#: Set by ``alflow report``: the workflow then lists the figures of the
#: finished iterations only (and the validation once it is done), so that
#: ``snakemake --report`` works on a running or stopped campaign.
REPORT_ENV = "ALFLOW_REPORT_FINISHED"
ITERATION_FIGURES = ("learning_curve", "parity", "dataset", "compute")
LOOP_FIGURES = ("deviation", "calibration", "exploration")


def reported_iterations(results: str | os.PathLike) -> int:
    """The last iteration N such that the figures of iterations 0..N all
    exist (-1: none yet)."""
    n = -1
    while True:
        d = Path(results) / "report" / f"iter_{n + 1:03d}"
        names = ITERATION_FIGURES + (LOOP_FIGURES if n + 1 > 0 else ())
        if not all((d / f"{name}.svg").exists() for name in names):
            return n
        n += 1
