"""Core- and GPU-hours of jobs from Snakemake's benchmark files (alflow.compute)."""
import pandas as pd
import pytest

from alflow import compute, metrics

HEADER = ["s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out",
          "mean_load", "cpu_time"]
EXTENDED = ["jobid", "rule_name", "wildcards", "params", "threads", "cpu_usage", "resources",
            "input_size_mb"]


def write(root, name, seconds, rule=None, threads=None, resources=None):
    """A benchmark file as Snakemake 9 writes it (extended when ``rule`` is given)."""
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    values = [seconds, "0:00:00", 100, 0, 0, 0, 0, 0, 50, seconds / 2]
    head = HEADER
    if rule is not None:
        head = HEADER + EXTENDED
        values += [3, rule, "{'stage': 'iter_001'}", "{'cache': 'x'}", threads, 1.0,
                   repr({"tmpdir": "/tmp", "_nodes": 1, **resources}), "{'a.xyz': 0.1}"]
    path.write_text("\t".join(head) + "\n" + "\t".join(map(str, values)) + "\n")


@pytest.fixture
def bench(tmp_path):
    # label: 2 MPI ranks x 3 OpenMP threads (threads from the config may differ from the
    # profile's set-resources: the ranks are what ran)
    write(tmp_path, "label/iter_001_chunk_0.tsv", 1800, "label", 2,
          {"tasks": 2, "cpus_per_task": 3, "mpi": "mpirun", "_cores": 2})
    write(tmp_path, "train/iter_001_member_0.tsv", 7200, "train", 4,
          {"gpu": 1, "mem_mb": 1000, "_cores": 4})
    write(tmp_path, "sample/iter_002_pack_0.tsv", 3600, "sample", 12,
          {"gpu": 1, "cpus_per_gpu": 16, "_cores": 12})  # a SLURM profile's cores per GPU
    write(tmp_path, "e0s.tsv", 360)                            # no --benchmark-extended
    write(tmp_path, "label/test_chunk_0.tsv", 720, "label", 4, {"tasks": 4, "cpus_per_task": 1})
    write(tmp_path, "validate.tsv", 3600, "validate", 8, {"gpu": 1})
    write(tmp_path, "campaign.tsv", 1, "campaign", 1, {})       # skipped
    return compute.read_benchmarks(tmp_path)


def row(b, rule, stage):
    return b[(b["rule"] == rule) & (b["stage"] == stage)].iloc[0]


def test_mpi_job_counts_ranks_times_threads(bench):
    label = row(bench, "label", "iter_001")
    assert (label.cores, label.gpus) == (6, 0)
    assert label.core_hours == pytest.approx(0.5 * 6) and label.gpu_hours == 0
    assert bool(label.resources_known) and label.iteration == 1


def test_gpu_job_counts_threads_and_gpus(bench):
    train = row(bench, "train", "iter_001")
    assert (train.cores, train.gpus) == (4, 1)
    assert train.core_hours == pytest.approx(8) and train.gpu_hours == pytest.approx(2)
    sample = row(bench, "sample", "iter_002")
    assert sample.cores == 16 and sample.core_hours == pytest.approx(16)


def test_file_without_extended_columns_counts_one_core(bench):
    e0s = row(bench, "e0s", "setup")
    assert not e0s.resources_known and (e0s.cores, e0s.gpus) == (1, 0)
    assert e0s.core_hours == pytest.approx(0.1) and e0s.gpu_hours == 0


def test_hours_per_iteration_puts_setup_in_iteration_0(bench):
    assert set(bench["rule"]) == {"label", "train", "sample", "e0s", "validate"}
    assert row(bench, "validate", "validation").iteration == -1
    hours = compute.hours_per_iteration(bench, range(3))
    assert hours[0] == pytest.approx({"core_hours": 0.1 + 0.2 * 4, "gpu_hours": 0})
    assert hours[1] == pytest.approx({"core_hours": 3 + 8, "gpu_hours": 2})
    assert hours[2] == pytest.approx({"core_hours": 16, "gpu_hours": 1})  # not validate's


def test_no_benchmark_files_give_zero_hours(tmp_path):
    b = compute.read_benchmarks(tmp_path)
    assert b.empty and list(b.columns) == compute.COLUMNS
    assert compute.hours_per_iteration(b, range(2)) == {
        i: {"core_hours": 0.0, "gpu_hours": 0.0} for i in range(2)}


def test_campaign_table_puts_hours_with_the_headline():
    rows = [metrics.campaign_row(i, {"n_train": 4, "n_valid": 1}, {"force_rmse_meV_per_A": 9.0})
            | {"core_hours": 1.5, "gpu_hours": 0.5} for i in range(2)]
    table = metrics.campaign_table(rows)
    assert list(metrics.headline(table).columns[-2:]) == ["core_hours", "gpu_hours"]
    assert isinstance(table, pd.DataFrame) and table["core_hours"].sum() == 3
