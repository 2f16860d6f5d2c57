"""The campaign report's figures, drawn from the small per-iteration products.

Every function takes small tables (the JSON/CSV files the rules write, never
trajectories) and returns a matplotlib :class:`~matplotlib.figure.Figure`;
:func:`save` writes it. No pyplot state is used, so the functions are safe to
call from tests and from one process for several figures.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from .compute import read_benchmarks  # noqa: F401  (jobs, core- and GPU-hours)

matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, searchable SVGs

# One colour per meaning, the same in every figure.
CLASS_COLORS = {"accurate": "#4c9a2a", "candidate": "#e0a100", "failed": "#c0392b"}
STOP_COLORS = {"completed": "#4c9a2a", "deviation": "#e0a100", "non_finite": "#c0392b"}
ARM_COLORS = ["#1f77b4", "#7f7f7f", "#9467bd", "#8c564b"]
EMPTY_TEXT = "nothing to show yet"


def save(fig: Figure, path: str | os.PathLike) -> None:
    """Write a figure (format from the suffix: .svg, .png), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    fig.savefig(tmp, bbox_inches="tight", dpi=110)
    os.replace(tmp, path)


def _figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 4.0):
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    return fig, axes


def _log_axis(axis) -> None:
    """A log axis labelled 1, 2, 5 x 10^k in plain numbers."""
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _empty(ax, text: str = EMPTY_TEXT) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


# --------------------------------------------------------------------------
# Did the potential improve?
# --------------------------------------------------------------------------


def learning_curve(arms: dict[str, pd.DataFrame], picks: pd.DataFrame | None = None) -> Figure:
    """Test-set energy and force RMSE against the number of labels, one line
    per arm (the campaign; a random control campaign when there is one).

    Each arm's table has ``iteration``, ``n_labels``,
    ``energy_rmse_meV_per_atom`` and ``force_rmse_meV_per_A`` (the campaign
    table's columns). ``picks`` (``iteration``, ``committee``, ``random``:
    mean true max force error, eV/Å, of the frames each way of picking chose)
    adds a third panel: the campaign's built-in random control share.
    The first arm's energy panel also draws, where its table has them, the
    offset-free RMSE (dashed) and the size of the constant offset (dotted):
    an RMSE that falls while its offset grows is drawn as such.
    """
    quantities = [("energy_rmse_meV_per_atom", "energy RMSE (meV/atom)"),
                  ("force_rmse_meV_per_A", "force RMSE (meV/Å)")]
    fig, axes = _figure(3 if picks is not None else 2, width=4.2, height=3.6)
    for ax, (col, label) in zip(axes, quantities):
        for k, (name, table) in enumerate(arms.items()):
            t = table.sort_values("n_labels")
            ax.plot(t["n_labels"], t[col], "o-", color=ARM_COLORS[k % len(ARM_COLORS)],
                    label=name)
            if k == 0 and col == "energy_rmse_meV_per_atom":
                _energy_parts(ax, t)
            if k == 0:
                for _, row in t.iterrows():
                    ax.annotate(f"{int(row['iteration'])}", (row["n_labels"], row[col]),
                                textcoords="offset points", xytext=(4, 4), fontsize=7,
                                color="0.3")
        ax.set_xlabel("reference labels in the dataset")
        ax.set_ylabel(f"test {label}")
        ax.set_yscale("log")
        _log_axis(ax.yaxis)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(title="numbers: iteration", fontsize=8, title_fontsize=8)
    if picks is not None:
        ax = axes[2]
        p = picks.sort_values("iteration")
        ax.plot(p["iteration"], p["committee"], "o-", color=ARM_COLORS[0], label="committee picks")
        ax.plot(p["iteration"], p["random"], "s--", color=ARM_COLORS[1], label="random picks")
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("true max force error of new labels (eV/Å)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("Learning curve on the held-out test set")
    return fig


def _energy_parts(ax, table: pd.DataFrame) -> None:
    """The offset-free RMSE and |offset| of a campaign's energies, under its RMSE."""
    parts = [("energy_offset_free_rmse_meV_per_atom", "--", "offset-free RMSE"),
             ("energy_offset_meV_per_atom", ":", "|offset|")]
    for col, style, label in parts:
        if col in table and table[col].notna().any():
            ax.plot(table["n_labels"], table[col].abs(), style, color=ARM_COLORS[0], alpha=0.8,
                    label=f"energy {label}")


def picks_table(calibrations: dict[int, pd.DataFrame]) -> pd.DataFrame | None:
    """Per iteration, the mean true max force error of the frames the
    committee picked and of those the random control share picked (from the
    calibrate rule's tables); None when no iteration had random picks."""
    rows = []
    for it, t in sorted(calibrations.items()):
        by_random = t["selected_by"].fillna("").astype(str) == "random"
        if by_random.any():
            rows.append({"iteration": it,
                         "committee": t.loc[~by_random, "true_max_force_error"].mean(),
                         "random": t.loc[by_random, "true_max_force_error"].mean()})
    return pd.DataFrame(rows) if rows else None


def parity(predictions: pd.DataFrame, title: str, baseline: pd.DataFrame | None = None,
           baseline_label: str = "iteration 0") -> Figure:
    """Predicted against reference energy (eV/atom) and force components
    (eV/Å) on the test set; ``baseline`` (e.g. the first committee) in grey
    underneath. ``predictions`` is the evaluate rule's long table
    (``quantity`` energy/force, ``reference``, ``predicted``)."""
    fig, axes = _figure(2, width=4.2, height=4.0)
    for ax, (quantity, unit) in zip(axes, [("energy", "eV/atom"), ("force", "eV/Å")]):
        layers = [(baseline, "0.7", baseline_label)] if baseline is not None else []
        layers.append((predictions, ARM_COLORS[0], title))
        lo, hi = np.inf, -np.inf
        for table, color, label in layers:
            t = table[table["quantity"] == quantity]
            if t.empty:
                continue
            err = t["predicted"] - t["reference"]
            text = f"{label}: RMSE {1000 * float(np.sqrt(np.mean(err ** 2))):.3g} m{unit}"
            if quantity == "energy":  # the constant offset apart, per composition
                comps = t["composition"] if "composition" in t else pd.Series("", index=t.index)
                free = err - err.groupby(comps).transform("mean")
                text += (f"\n  = offset {1000 * float(err.mean()):+.3g}, offset-free "
                         f"{1000 * float(np.sqrt(np.mean(free ** 2))):.3g}")
            ax.scatter(t["reference"], t["predicted"], s=6 if quantity == "force" else 14,
                       alpha=0.6, color=color, rasterized=True, label=text)
            lo = min(lo, t["reference"].min(), t["predicted"].min())
            hi = max(hi, t["reference"].max(), t["predicted"].max())
        if not np.isfinite(lo):
            _empty(ax)
            continue
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k-", lw=0.8)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal")
        ax.set_xlabel(f"reference {quantity} ({unit})")
        ax.set_ylabel(f"committee {quantity} ({unit})")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16))
        ax.grid(alpha=0.3)
    fig.suptitle(f"Parity on the held-out test set: {title}")
    return fig


# --------------------------------------------------------------------------
# Where did the committee disagree?
# --------------------------------------------------------------------------


def _log_bins(values: np.ndarray, extra=()) -> np.ndarray:
    v = np.concatenate([values[np.isfinite(values) & (values > 0)], [x for x in extra if x > 0]])
    if v.size == 0:
        return np.logspace(-3, 1, 30)
    lo, hi = v.min(), v.max()
    if hi <= lo:
        lo, hi = lo / 2, hi * 2
    return np.logspace(np.log10(lo) - 0.05, np.log10(hi) + 0.05, 30)


def deviation_histogram(frames: pd.DataFrame, trust_lo: float, trust_hi: float,
                        title: str = "") -> Figure:
    """Committee force deviation of every sampled frame (the select rule's
    frames.csv: ``deviation``, ``class``, ``selected_by``), stacked by class,
    with the selected frames outlined and the trust levels drawn in."""
    fig, (ax,) = _figure(width=6.5, height=3.8)
    if frames.empty:
        _empty(ax, "no frames were sampled")
        return fig
    dev = frames["deviation"].to_numpy(dtype=float)
    bins = _log_bins(dev, (trust_lo, trust_hi))
    shown = np.where(np.isfinite(dev), np.clip(dev, bins[0], bins[-1]), bins[-1])
    counts = frames["class"].value_counts()
    data, colors, labels = [], [], []
    for cls, color in CLASS_COLORS.items():
        mask = (frames["class"] == cls).to_numpy()
        data.append(shown[mask])
        colors.append(color)
        labels.append(f"{cls}: {int(counts.get(cls, 0))}")
    ax.hist(data, bins=bins, stacked=True, color=colors, label=labels)
    chosen = frames["selected_by"].fillna("").astype(str) != ""
    if chosen.any():
        ax.hist(shown[chosen.to_numpy()], bins=bins, histtype="step", color="k", lw=1.5,
                label=f"selected: {int(chosen.sum())}")
    for level, name, style in ((trust_lo, "trust_lo", "--"), (trust_hi, "trust_hi", ":")):
        if level > 0:  # a level of 0 has no place on a log axis
            ax.axvline(level, color="k", ls=style, lw=1.2, label=f"{name} {level:.3g} eV/Å")
    ax.set_xscale("log")
    _log_axis(ax.xaxis)
    ax.set_xlabel("committee force deviation, max over atoms (eV/Å)")
    ax.set_ylabel("sampled frames")
    fig.legend(fontsize=8, loc="outside right upper")
    ax.set_title(title or f"Committee deviation of {len(frames)} sampled frames")
    return fig


def calibration(table: pd.DataFrame, trust_lo: float, trust_hi: float, spearman=None,
                title: str = "", scale: float | None = None) -> Figure:
    """Predicted deviation against the true max atomic force error of the
    frames labelled this iteration (the calibrate rule's table), coloured by
    how they were picked (``audit``: the unbiased sample); y = x is a
    perfectly calibrated committee, y = ``scale`` x the fitted calibration."""
    fig, (ax,) = _figure(width=5.2, height=4.4)
    t = table.replace([np.inf, -np.inf], np.nan).dropna(subset=["deviation",
                                                                  "true_max_force_error"])
    if t.empty:
        _empty(ax, "no labelled frames with committee predictions")
        return fig
    groups = t.groupby(t["selected_by"].fillna("").astype(str).replace("", "other"))
    for k, (name, g) in enumerate(groups):
        ax.scatter(g["deviation"], g["true_max_force_error"], s=18, alpha=0.75,
                   color=ARM_COLORS[k % len(ARM_COLORS)], label=f"{name} ({len(g)})",
                   rasterized=True)
    both = np.concatenate([t["deviation"], t["true_max_force_error"], [trust_lo, trust_hi]])
    both = both[both > 0]
    lo, hi = both.min() / 1.5, both.max() * 1.5
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="error = deviation")
    if scale:
        ax.plot([lo, hi], [scale * lo, scale * hi], color="tab:red", lw=1.2,
                label=f"calibrated: error = {scale:.2g} × deviation")
    for level in (trust_lo, trust_hi):
        if level > 0:
            ax.axvline(level, color="k", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_axis(ax.xaxis)
    _log_axis(ax.yaxis)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("committee deviation (eV/Å)")
    ax.set_ylabel("true max atomic force error (eV/Å)")
    rho = "n/a" if spearman is None else f"{spearman:.2f}"
    ax.set_title(title or f"Does the deviation predict the error? Spearman ρ = {rho}")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, which="both")
    return fig


# --------------------------------------------------------------------------
# How did the walkers explore?
# --------------------------------------------------------------------------


def _condition(record: dict) -> str:
    text = f"{record.get('temperature', float('nan')):g} K"
    if record.get("pressure") is not None:
        text += f", {record['pressure']:g} GPa"
    return text


def exploration(walkers: list[dict], steps_target: int | None = None,
                title: str = "") -> Figure:
    """Steps run by every walker in one iteration, one bar segment per run
    between restarts, coloured by why it stopped; walkers grouped by
    temperature/pressure. ``walkers`` are the sample rule's records."""
    fig, (ax,) = _figure(width=6.5, height=max(2.5, 0.35 * len(walkers) + 1.2))
    if not walkers:
        _empty(ax, "no walkers")
        return fig
    order = sorted(walkers, key=lambda r: (r.get("temperature") or 0,
                                           r.get("pressure") or 0, r["walker"]))
    seen = set()
    for y, record in enumerate(order):
        left = 0
        segments = record.get("segments") or [{"steps": record["steps"],
                                               "stop_reason": record["stop_reason"]}]
        for seg in segments:
            reason = seg["stop_reason"]
            ax.barh(y, max(seg["steps"], 0.5), left=left, height=0.7, edgecolor="white",
                    color=STOP_COLORS.get(reason, "0.5"),
                    label=None if reason in seen else reason)
            seen.add(reason)
            left += seg["steps"]
    ax.set_yticks(range(len(order)),
                  [f"walker {r['walker']} · {_condition(r)}" for r in order], fontsize=8)
    if steps_target:
        ax.axvline(steps_target, color="k", ls="--", lw=1, label="steps asked")
    ax.set_xlabel("MD steps (each segment: one run until a stop or restart)")
    fig.legend(title="segment ended by", fontsize=8, title_fontsize=8, loc="outside right upper")
    n_restarts = sum(r.get("restarts", 0) for r in walkers)
    ax.set_title(title or f"Exploration: {sum(r['steps'] for r in walkers)} steps, "
                          f"{n_restarts} restarts")
    return fig


# --------------------------------------------------------------------------
# What went into the dataset, and where did the compute go?
# --------------------------------------------------------------------------


def dataset_growth(summaries: pd.DataFrame) -> Figure:
    """Labels per iteration (train/valid, cumulative) and label failures by
    kind. ``summaries``: one row per iteration with ``iteration``,
    ``n_train``, ``n_valid``, ``n_new_labels`` and ``label_failures``
    ({kind: count}, the dataset rule's summary.json)."""
    fig, (grow, fail) = _figure(2, width=4.5, height=3.6)
    s = summaries.sort_values("iteration")
    it = s["iteration"].to_numpy()
    grow.bar(it, s["n_train"], color=ARM_COLORS[0], label="train")
    grow.bar(it, s["n_valid"], bottom=s["n_train"], color=ARM_COLORS[1], label="valid")
    grow.plot(it, s["n_new_labels"], "ko-", ms=4, label="new this iteration")
    grow.set_xlabel("iteration")
    grow.set_ylabel("labelled structures")
    grow.set_xticks(it)
    grow.legend(fontsize=8)
    grow.set_title("Dataset growth")
    failures = pd.DataFrame([dict(f or {}) for f in s.get("label_failures", [{}] * len(s))],
                            index=it).fillna(0)
    if failures.empty or failures.to_numpy().sum() == 0:
        _empty(fail, "no label failures")
    else:
        bottom = np.zeros(len(it))
        for k, kind in enumerate(failures.columns):
            fail.bar(it, failures[kind], bottom=bottom, label=kind,
                     color=list(CLASS_COLORS.values())[k % 3] if k < 3 else None)
            bottom += failures[kind].to_numpy()
        fail.set_xticks(it)
        fail.set_xlabel("iteration")
        fail.set_ylabel("structures that failed to label")
        fail.legend(fontsize=8)
    fail.set_title("Label failures by reason")
    return fig


def _stage_label(stage: str) -> str:
    if stage.startswith("iter_"):
        return f"iteration {int(stage[5:])}"
    return {"test": "test set", "setup": "set-up"}.get(stage, stage)


def _stage_key(stage: str):
    return {"setup": 0, "test": 1, "validation": 3}.get(stage, 2), stage


def compute(bench: pd.DataFrame, last_iteration: int | None = None) -> Figure:
    """Core-hours (left) and GPU-hours (right) of the finished jobs, summed per
    rule and per iteration (set-up and the test set first), stacked, from
    :func:`read_benchmarks`. Jobs of later iterations than ``last_iteration``
    and after the loop (validation) are left out then. Jobs whose benchmark
    file has no resources (no ``--benchmark-extended``) count one core."""
    fig, (ax, gpu) = _figure(ncols=2, width=4.6, height=3.8)
    b = bench if last_iteration is None else bench[
        (bench["iteration"] <= last_iteration) & (bench["stage"] != "validation")]
    if b.empty:
        _empty(ax, "no finished jobs")
        _empty(gpu, "no finished jobs")
        return fig
    order = sorted(b["stage"].unique(), key=_stage_key)
    rules = b.groupby("rule")["core_hours"].sum().sort_values(ascending=False).index
    colors = {rule: matplotlib.colormaps["tab20"](k % 20) for k, rule in enumerate(rules)}
    x, labelled = np.arange(len(order)), set()
    for panel, column, unit in ((ax, "core_hours", "core-hours"), (gpu, "gpu_hours", "GPU-hours")):
        pivot = b.pivot_table(index="stage", columns="rule", values=column, aggfunc="sum")
        pivot = pivot.reindex(index=order, columns=rules).fillna(0)
        pivot = pivot.loc[:, pivot.sum() > 0]
        if pivot.empty:
            _empty(panel, f"no {unit} used")
            continue
        bottom = np.zeros(len(order))
        for rule in pivot.columns:
            panel.bar(x, pivot[rule], bottom=bottom, color=colors[rule],
                      label=None if rule in labelled else rule)
            bottom += pivot[rule].to_numpy()
            labelled.add(rule)
        panel.set_xticks(x, [_stage_label(s) for s in order], fontsize=8, rotation=30, ha="right")
        panel.set_ylabel(f"{unit}, summed over jobs")
        panel.set_title(f"{b[column].sum():.3g} {unit}", fontsize=10)
    fig.legend(fontsize=8, title="rule", title_fontsize=8, loc="outside right upper")
    title = f"Where the compute went: {len(b)} jobs"
    unknown = int((~b["resources_known"].astype(bool)).sum())
    if unknown:
        title += (f"\n{unknown} without recorded resources (no --benchmark-extended): "
                  "counted as 1 core, no GPU")
    fig.suptitle(title, fontsize=10)
    return fig


# --------------------------------------------------------------------------
# Is the potential ready for production?
# --------------------------------------------------------------------------


def validation_stability(runs: list[dict], steps: int, trace: pd.DataFrame,
                         cap: float | None = None) -> Figure:
    """Left: the steps each validation run lasted, coloured by how it ended;
    right: the committee deviation along every run (``trace``: columns run,
    step, deviation), with the cap that stops a run."""
    fig, (ax, dev) = _figure(ncols=2, width=5.5, height=max(2.8, 0.35 * len(runs) + 1.2))
    if not runs:
        _empty(ax, "no validation runs")
        _empty(dev, "no validation runs")
        return fig
    seen = set()
    for y, run in enumerate(runs):
        reason = run["ended_by"]
        ax.barh(y, max(run["steps_run"], 0.5), height=0.7, color=STOP_COLORS.get(
            reason, CLASS_COLORS["failed"]), label=None if reason in seen else reason)
        seen.add(reason)
    ax.axvline(steps, color="k", ls="--", lw=1, label="steps asked")
    ax.set_yticks(range(len(runs)), [f"{run['condition']} · seed {run['seed']}" for run in runs],
                  fontsize=8)
    ax.set_xlabel("MD steps until the run ended")
    ax.legend(title="ended by", fontsize=8, title_fontsize=8)
    ax.set_title(f"Stability: {sum(r['failed_at_step'] is None for r in runs)} of {len(runs)} "
                 "runs completed")
    for k, (name, part) in enumerate(trace.groupby("run", sort=False)):
        dev.plot(part["step"], part["deviation"], lw=1, color=ARM_COLORS[k % len(ARM_COLORS)],
                 alpha=0.8)
    if cap is not None:
        dev.axhline(cap, color=CLASS_COLORS["failed"], ls="--", lw=1, label="cap (stop)")
        dev.legend(fontsize=8)
    dev.set(xlabel="MD step", ylabel="committee force deviation (eV/Å)",
            title="Deviation along the runs")
    return fig


def validation_rdf(rdfs: dict[str, dict]) -> Figure:
    """Radial distribution functions of the validation runs against the
    reference MD, one panel per condition and element pair (``rdfs``:
    {condition: {pair: {r, g, g_reference, distance}}})."""
    panels = [(cond, pair, data) for cond, pairs in rdfs.items() for pair, data in pairs.items()]
    ncols = min(3, max(1, len(panels)))
    nrows = max(1, -(-len(panels) // ncols))
    fig, axes = _figure(ncols=ncols, nrows=nrows, width=4.0, height=3.0)
    if not panels:
        _empty(axes[0], "no reference MD at the validation conditions")
        return fig
    for ax, (cond, pair, data) in zip(axes, panels):
        ax.plot(data["r"], data["g_reference"], color="k", lw=1.5, label="reference MD")
        ax.plot(data["r"], data["g"], color=ARM_COLORS[0], lw=1.2, ls="--", label="potential")
        ax.set(title=f"{pair} · {cond} · distance {data['distance']:.2f} Å", xlabel="r (Å)",
               ylabel="g(r)")
        ax.title.set_fontsize(9)
    axes[0].legend(fontsize=8)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return fig
