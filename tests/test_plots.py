"""The report's figures, each drawn from a small hand-made table."""
import re

import numpy as np
import pandas as pd
import pytest

from alflow import plots


def campaign(n=4):
    return pd.DataFrame({
        "iteration": range(n), "n_labels": [10, 18, 26, 34][:n],
        "energy_rmse_meV_per_atom": [40.0, 20.0, 12.0, 9.0][:n],
        "force_rmse_meV_per_A": [400.0, 250.0, 160.0, 120.0][:n],
        "n_train": [8, 14, 21, 27][:n], "n_valid": [2, 4, 5, 7][:n],
        "n_new_labels": [10, 8, 8, 8][:n],
        "label_failures": [{}, {"scf_not_converged": 2}, {}, {"scf_not_converged": 1,
                                                              "cp2k_crashed": 1}][:n],
    })


def svg_size(path):
    head = path.read_text()[:600]
    w, h = (float(re.search(rf'{k}="([\d.]+)pt"', head).group(1)) for k in ("width", "height"))
    return w, h


def test_learning_curve_draws_every_arm_against_labels(tmp_path):
    active, random = campaign(), campaign().assign(force_rmse_meV_per_A=[400, 300, 250, 220])
    fig = plots.learning_curve({"active": active, "random": random})
    energy, force = fig.axes[:2]
    assert len(fig.axes) == 2
    assert [line.get_label() for line in force.lines] == ["active", "random"]
    assert list(force.lines[0].get_xdata()) == [10, 18, 26, 34]
    assert list(force.lines[1].get_ydata()) == [400, 300, 250, 220]
    assert list(energy.lines[0].get_ydata()) == [40, 20, 12, 9]
    # with the offset split, the campaign's energy panel shows its parts
    split = active.assign(energy_offset_free_rmse_meV_per_atom=[10.0, 8.0, 6.0, 5.0],
                          energy_offset_meV_per_atom=[-38.0, 18.0, 10.0, 7.0])
    energy = plots.learning_curve({"active": split, "random": random}).axes[0]
    parts = {line.get_label(): list(line.get_ydata()) for line in energy.lines}
    assert parts["energy offset-free RMSE"] == [10, 8, 6, 5] and parts["energy |offset|"] == [38, 18, 10, 7]
    assert force.get_yscale() == "log"
    picks = pd.DataFrame({"iteration": [1, 2], "committee": [1.2, 0.9], "random": [0.3, 0.2]})
    fig = plots.learning_curve({"campaign": active}, picks)
    assert len(fig.axes) == 3 and list(fig.axes[2].lines[1].get_ydata()) == [0.3, 0.2]
    plots.save(fig, tmp_path / "lc.svg")
    assert "<svg" in (tmp_path / "lc.svg").read_text() and "learning" in \
        (tmp_path / "lc.svg").read_text().lower()  # text stays text


def test_picks_table_only_with_random_picks():
    cal = {1: pd.DataFrame({"selected_by": ["balanced", "balanced", "random"],
                            "true_max_force_error": [1.0, 3.0, 0.5]}),
           2: pd.DataFrame({"selected_by": ["balanced"], "true_max_force_error": [0.7]})}
    table = plots.picks_table(cal)
    assert table.to_dict("records") == [{"iteration": 1, "committee": 2.0, "random": 0.5}]
    assert plots.picks_table({2: cal[2]}) is None


def predictions(offset=0.0):
    rng = np.random.default_rng(0)
    ref_f = rng.normal(size=12)
    return pd.DataFrame({
        "structure": [0, 1] + [0] * 6 + [1] * 6,
        "quantity": ["energy", "energy"] + ["force"] * 12,
        "reference": np.r_[[-3.0, -3.1], ref_f],
        "predicted": np.r_[[-3.0 + offset, -3.1 + offset], ref_f + 0.1],
    })


def test_parity_reports_each_committee_rmse():
    fig = plots.parity(predictions(0.02), "iteration 2", baseline=predictions(0.05))
    energy, force = fig.axes
    labels = [t.get_text() for t in energy.get_legend().get_texts()]
    assert labels == ["iteration 0: RMSE 50 meV/atom\n  = offset +50, offset-free 0",
                      "iteration 2: RMSE 20 meV/atom\n  = offset +20, offset-free 0"]
    assert [t.get_text() for t in force.get_legend().get_texts()][1] == \
        "iteration 2: RMSE 100 meV/Å"
    assert len(force.collections) == 2 and len(force.collections[1].get_offsets()) == 12
    assert energy.get_xlim() == energy.get_ylim()  # square, diagonal = exact
    # two compositions: each loses its own offset
    two = predictions(0.02).assign(composition=["Cu", "AuCu3"] + ["x"] * 12)
    two.loc[1, "predicted"] = -3.1 - 0.04
    label = plots.parity(two, "it").axes[0].get_legend().get_texts()[0].get_text()
    assert label.endswith("= offset -10, offset-free 0")
    only_forces = predictions()[lambda t: t.quantity == "force"]
    fig = plots.parity(only_forces, "iteration 0")
    assert fig.axes[0].texts[0].get_text() == plots.EMPTY_TEXT


def frames_table():
    dev = [0.01, 0.02, 0.03, 0.1, 0.2, 0.3, 0.4, 0.9, np.nan]
    cls = ["accurate"] * 3 + ["candidate"] * 4 + ["failed"] * 2
    sel = ["", "", "", "balanced", "", "balanced", "random", "", ""]
    return pd.DataFrame({"deviation": dev, "class": cls, "selected_by": sel})


def test_deviation_histogram_counts_classes_and_draws_levels(tmp_path):
    fig = plots.deviation_histogram(frames_table(), 0.05, 0.5)
    (ax,) = fig.axes
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["accurate: 3", "candidate: 4", "failed: 2", "selected: 3",
                      "trust_lo 0.05 eV/Å", "trust_hi 0.5 eV/Å"]
    heights = [sum(p.get_height() for p in c) for c in ax.containers]
    # one stacked layer per class; the NaN frame is counted as failed, at the top bin
    assert heights[:3] == [3, 4, 2]
    assert sorted(line.get_xdata()[0] for line in ax.lines) == [0.05, 0.5]
    # a trust level of 0 (allowed) is not drawn on the log axis, and the figure
    # keeps a sane size (it used to blow up to 400 000 px)
    plots.save(plots.deviation_histogram(frames_table(), 0.0, 0.5), tmp_path / "dev.svg")
    w, h = svg_size(tmp_path / "dev.svg")
    assert 200 < w < 1000 and 100 < h < 600
    assert plots.deviation_histogram(frames_table().iloc[:0], 0.05, 0.5).axes[0].texts


def test_calibration_scatter_by_picking_and_spearman():
    table = pd.DataFrame({"deviation": [0.1, 0.2, 0.4, 0.3, np.inf],
                          "true_max_force_error": [0.2, 0.5, 0.9, 0.1, 1.0],
                          "selected_by": ["balanced", "balanced", "balanced", "random", "random"]})
    fig = plots.calibration(table, 0.05, 0.5, spearman=0.8)
    (ax,) = fig.axes
    assert [len(c.get_offsets()) for c in ax.collections] == [3, 1]  # the inf row is dropped
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["balanced (3)", "random (1)"]
    assert "0.80" in ax.get_title()
    assert "n/a" in plots.calibration(table, 0.05, 0.5).axes[0].get_title()
    assert plots.calibration(table.iloc[:0], 0.05, 0.5).axes[0].texts


def test_exploration_one_segment_per_run():
    walkers = [
        {"walker": 1, "temperature": 600.0, "pressure": None, "steps": 100, "restarts": 0,
         "stop_reason": "completed", "segments": [{"steps": 100, "stop_reason": "completed"}]},
        {"walker": 0, "temperature": 300.0, "pressure": 1.0, "steps": 70, "restarts": 2,
         "stop_reason": "completed",
         "segments": [{"steps": 20, "stop_reason": "deviation"},
                      {"steps": 0, "stop_reason": "non_finite"},
                      {"steps": 50, "stop_reason": "completed"}]},
    ]
    fig = plots.exploration(walkers, steps_target=100)
    ax = fig.axes[0]
    bars = ax.patches
    assert len(bars) == 4
    # sorted by temperature: walker 0 (300 K) is the first row, its segments follow each other
    row0 = sorted((b for b in bars if abs(b.get_y() + b.get_height() / 2) < 1e-9),
                  key=lambda b: b.get_x())
    assert [b.get_x() for b in row0] == [0, 20, 20] and row0[-1].get_width() == 50
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "walker 0 · 300 K, 1 GPa", "walker 1 · 600 K"]
    assert "170 steps, 2 restarts" in ax.get_title()
    assert plots.exploration([]).axes[0].texts


def test_dataset_growth_and_failures_by_kind():
    fig = plots.dataset_growth(campaign())
    grow, fail = fig.axes
    assert [b.get_height() for b in grow.containers[0]] == [8, 14, 21, 27]
    assert [b.get_height() for b in grow.containers[1]] == [2, 4, 5, 7]
    kinds = [t.get_text() for t in fail.get_legend().get_texts()]
    assert kinds == ["scf_not_converged", "cp2k_crashed"]
    assert [b.get_height() for b in fail.containers[0]] == [0, 2, 0, 1]
    no_failures = campaign().assign(label_failures=[{}] * 4)
    assert plots.dataset_growth(no_failures).axes[1].texts[0].get_text() == "no label failures"


BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


@pytest.fixture
def bench_dir(tmp_path):
    files = {"train/iter_000_member_0.tsv": 60, "train/iter_001_member_0.tsv": 30,
             "train/iter_001_member_1.tsv": 36, "label/iter_001_chunk_0.tsv": 12,
             "label/test_chunk_0.tsv": 6, "e0s.tsv": 3, "report/campaign_iter_001.tsv": 2,
             "campaign.tsv": 1, "sample/iter_002_pack_0.tsv": 24}
    for name, s in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(BENCH_HEADER + f"{s}\t0:00:{s:02d}\t100\t0\t0\t0\t0\t0\t50\t{s / 2}\n")
    (tmp_path / "label" / "iter_002_chunk_0.tsv").write_text("")  # killed while writing
    return tmp_path


def test_read_benchmarks_names_rule_and_stage(bench_dir):
    b = plots.read_benchmarks(bench_dir)
    assert len(b) == 7 and set(b["rule"]) == {"train", "label", "e0s", "sample"}
    row = b[(b.rule == "label") & (b.stage == "test")].iloc[0]
    assert row.iteration == -1 and row.seconds == 6 and row.cpu_seconds == 3
    assert b[b.rule == "e0s"].iloc[0].stage == "setup"
    assert b[b.stage == "iter_001"].seconds.sum() == 78


def test_compute_stacks_core_hours_per_rule_and_stage(bench_dir):
    b = plots.read_benchmarks(bench_dir)  # no extended columns: 1 core, no GPU each
    fig = plots.compute(b, last_iteration=1)
    ax, gpu = fig.axes[:2]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["set-up", "test set", "iteration 0", "iteration 1"]  # not iteration 2
    tops = np.zeros(len(ticks))
    for container in ax.containers:
        tops += [p.get_height() for p in container]
    assert tops == pytest.approx([3 / 3600, 6 / 3600, 60 / 3600, 78 / 3600])
    assert ax.get_title() == "0.0408 core-hours"
    assert gpu.texts[0].get_text() == "no GPU-hours used"
    assert "6 jobs" in fig._suptitle.get_text() and "6 without recorded resources" in \
        fig._suptitle.get_text()
    assert plots.compute(b.iloc[:0]).axes[0].texts


def test_compute_draws_gpu_hours_from_extended_benchmarks(tmp_path):
    extended = BENCH_HEADER.rstrip("\n") + "\tjobid\trule_name\twildcards\tparams\tthreads" \
        "\tcpu_usage\tresources\tinput_size_mb\n"
    jobs = {"train/iter_000_member_0.tsv": ("train", 4, "{'gpu': 1, '_cores': 4}"),
            "label/iter_000_chunk_0.tsv": ("label", 6, "{'tasks': 2, 'cpus_per_task': 3}")}
    for name, (rule, threads, res) in jobs.items():
        (tmp_path / rule).mkdir()
        (tmp_path / name).write_text(extended + f"3600\t1:00:00\t1\t1\t1\t1\t0\t0\t1\t1\t7\t"
                                     f"{rule}\t{{}}\t{{}}\t{threads}\t1\t{res}\t{{}}\n")
    fig = plots.compute(plots.read_benchmarks(tmp_path))
    ax, gpu = fig.axes[:2]
    assert ax.get_title() == "10 core-hours" and gpu.get_title() == "1 GPU-hours"
    assert [p.get_height() for c in gpu.containers for p in c] == [1]
    assert "without recorded resources" not in fig._suptitle.get_text()
    plots.save(fig, tmp_path / "compute.svg")
