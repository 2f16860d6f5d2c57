"""Training through mace-torch's CLI, fine-tuning, resuming, and test-set metrics."""
import json
import math
from pathlib import Path

import pytest

from alflow.io import read_frames
from alflow.metrics import campaign_table, evaluate, load_committee
from alflow import training
from alflow.training import (e0s_argument, e0s_mismatch, mace_arguments, model_e0s, train_member,
                             train_members)
from conftest import TINY_MACE


def test_arguments():
    args = mace_arguments(name="m", train_file="t.xyz", valid_file="v.xyz", work_dir="w",
                          e0s={"O": -2.0, "H": -1.5}, seed=4, device="cpu", dtype="float64",
                          epochs=3, hyper={"r_max": 4.0, "swa": False, "stage_two": True,
                                                 "ema": True, "ema_decay": 0.99},
                          foundation="prev.model")
    assert "--E0s={1: -1.5, 8: -2.0}" in args
    # mace-torch's switches (store_true) stand alone when true and are left out when false
    assert "--stage_two" in args and "--ema" in args and "--ema_decay=0.99" in args
    assert not any(a.startswith("--swa") for a in args) and "--r_max=4.0" in args
    assert "--foundation_model=prev.model" in args and "--multiheads_finetuning=False" in args
    assert "--energy_key=REF_energy" in args and "--max_num_epochs=3" in args
    assert e0s_argument("average") == "average"
    with pytest.raises(ValueError, match="seed"):
        mace_arguments(name="m", train_file="t", valid_file="v", work_dir="w", e0s="average",
                       seed=1, device="cpu", dtype="float64", epochs=1, hyper={"seed": 2})


def test_committee_metrics(cu_committee, cu_dataset):
    calc = load_committee(cu_committee, "cpu", "float64")
    m = evaluate(calc, read_frames(cu_dataset / "test.xyz"))
    assert m["n_structures"] == 6
    assert 0 < m["force_rmse_meV_per_A"] < 5000 and math.isfinite(m["energy_rmse_meV_per_atom"])
    assert len(m["member_force_rmse_meV_per_A"]) == 2
    # the committee mean is never worse than the worse member (convexity of RMSE)
    assert m["force_rmse_meV_per_A"] <= max(m["member_force_rmse_meV_per_A"]) + 1e-9
    with pytest.raises(ValueError, match="empty"):
        evaluate(calc, [])


def test_committee_predictions_for_parity(cu_committee, cu_dataset):
    """The parity table holds what the metrics were computed from."""
    frames = read_frames(cu_dataset / "test.xyz")
    calc = load_committee(cu_committee, "cpu", "float64")
    m, table = evaluate(calc, frames, return_predictions=True)
    energy, force = table[table.quantity == "energy"], table[table.quantity == "force"]
    assert len(energy) == 6 and len(force) == 3 * sum(len(a) for a in frames)
    assert energy.reference.iloc[0] == pytest.approx(
        frames[0].info["REF_energy"] / len(frames[0]))
    rmse = 1000 * ((force.predicted - force.reference) ** 2).mean() ** 0.5
    assert rmse == pytest.approx(m["force_rmse_meV_per_A"])
    e_rmse = 1000 * ((energy.predicted - energy.reference) ** 2).mean() ** 0.5
    assert e_rmse == pytest.approx(m["energy_rmse_meV_per_atom"])


def _train(tmp_path, cu_dataset, foundation=None, epochs=2, **hyper):
    out = tmp_path / "m.model"
    train_member(output=str(out), work_dir=str(tmp_path / "work"), log_file=str(tmp_path / "log"),
                 threads=1, name="m", train_file=str(cu_dataset / "train.xyz"),
                 valid_file=str(cu_dataset / "valid.xyz"), e0s={"Cu": 0.0}, seed=7,
                 device="cpu", dtype="float64", epochs=epochs, hyper={**TINY_MACE, **hyper},
                 foundation=foundation)
    return out


def test_stage_two_member_is_the_stage_two_model(tmp_path, cu_dataset):
    """With mace-torch's stage two the member is its stage-two model, not the
    stage-one model mace-torch writes beside it."""
    out = _train(tmp_path, cu_dataset, epochs=4, model="ScaleShiftMACE", stage_two=True)
    log = (tmp_path / "log").read_text()
    assert "--stage_two" in log and "Stage Two" in log
    work = tmp_path / "work"
    assert out.read_bytes() == (work / "m_stagetwo.model").read_bytes()
    assert out.read_bytes() != (work / "m.model").read_bytes()


def test_finetune_from_previous_member(tmp_path, cu_committee, cu_dataset):
    out = _train(tmp_path, cu_dataset, foundation=cu_committee[0])
    assert out.exists()
    assert "Using foundation model" in (tmp_path / "log").read_text()


def test_rerun_resumes_from_checkpoint_of_the_same_run(tmp_path, cu_dataset):
    _train(tmp_path, cu_dataset, epochs=3)
    # as if the job had been killed after a checkpoint, before mace wrote its model
    (tmp_path / "m.model").unlink()
    (tmp_path / "work" / "m.model").unlink()
    out = _train(tmp_path, cu_dataset, epochs=3)
    log = (tmp_path / "log").read_text()
    assert out.exists() and "resuming from checkpoint" in log and "--restart_latest" in log
    # killed after mace finished (Snakemake removed the output): the model is taken as it is
    (tmp_path / "m.model").unlink()
    _train(tmp_path, cu_dataset, epochs=3)
    assert (tmp_path / "log").read_text().count("already finished: reusing") == 1
    # different arguments (more epochs): a fresh start, not a resume of a stale run
    (tmp_path / "log").write_text("")
    _train(tmp_path, cu_dataset, epochs=4)
    assert "resuming" not in (tmp_path / "log").read_text()


def test_changed_data_under_the_same_path_retrains(tmp_path, cu_dataset):
    """The reuse of a finished run is keyed by the content of the files it
    read, not their paths: a dataset rewritten with other frames retrains;
    identical content (a cascade that rewrote the same bytes) reuses."""
    from conftest import cu_frames
    from alflow.io import write_frames

    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.xyz", "valid.xyz"):
        (data / name).write_bytes((cu_dataset / name).read_bytes())
    first = _train(tmp_path, data, epochs=2).read_bytes()
    (tmp_path / "m.model").unlink()  # Snakemake removes the output before a rerun
    (data / "train.xyz").write_bytes((cu_dataset / "train.xyz").read_bytes())  # same bytes
    assert _train(tmp_path, data, epochs=2).read_bytes() == first
    assert (tmp_path / "log").read_text().count("already finished: reusing") == 1
    (tmp_path / "m.model").unlink()
    write_frames(data / "train.xyz", cu_frames(16, seed=5))  # new labels, same path
    (tmp_path / "log").write_text("")
    retrained = _train(tmp_path, data, epochs=2).read_bytes()
    log = (tmp_path / "log").read_text()
    assert "reusing" not in log and "resuming" not in log and "mace_run_train" in log
    assert retrained != first
    key = json.loads((tmp_path / "work" / "arguments.json").read_text())
    assert key["files"][str(data / "train.xyz")] == training.file_sha256(data / "train.xyz")
    # where it runs is not part of the key
    args = mace_arguments(name="m", train_file=str(data / "train.xyz"), valid_file="v.xyz",
                          work_dir="w", e0s="average", seed=1, device="cpu", dtype="float64",
                          epochs=1, hyper={"valid_batch_size": 4})
    gpu_args = [a.replace("--device=cpu", "--device=cuda").replace("=4", "=32") for a in args]
    assert training.training_key(args) == training.training_key(gpu_args)


def test_stress_is_trained_when_asked():
    common = dict(name="m", train_file="t.xyz", valid_file="v.xyz", work_dir="w",
                  e0s="average", seed=1, device="cpu", dtype="float64", epochs=1)
    args = mace_arguments(hyper={}, stress_weight=1000.0, **common)
    assert "--loss=stress" in args and "--stress_weight=1000.0" in args
    assert not any(a.startswith(("--loss", "--stress_weight")) for a in
                   mace_arguments(hyper={}, **common))
    own = mace_arguments(hyper={"loss": "universal"}, stress_weight=10.0, **common)
    assert "--loss=universal" in own and "--stress_weight=10.0" in own
    with pytest.raises(ValueError, match="stress_weight"):
        mace_arguments(hyper={"stress_weight": 3}, **common)


def test_failed_training_leaves_no_model(tmp_path, cu_dataset):
    bad = tmp_path / "empty.xyz"
    bad.write_text("")
    with pytest.raises(RuntimeError, match="mace_run_train failed"):
        train_member(output=str(tmp_path / "x.model"), work_dir=str(tmp_path / "w"),
                     log_file=str(tmp_path / "log"), threads=1, name="x", train_file=str(bad),
                     valid_file=str(bad), e0s={"Cu": 0.0}, seed=1, device="cpu",
                     dtype="float64", epochs=1, hyper=TINY_MACE)
    assert not (tmp_path / "x.model").exists()


def test_members_trained_at_once_each_on_its_own_gpu(tmp_path, cu_dataset, monkeypatch):
    """committee.train_in_one_job: real mace_run_train processes side by side,
    seen through a wrapper that records each one's environment and time span
    in its member's log (CUDA_VISIBLE_DEVICES is only recorded: no GPU here)."""
    real = training.mace_executable()
    wrapper = tmp_path / "mace.sh"
    wrapper.write_text("echo start $(date +%s.%N) gpu=$CUDA_VISIBLE_DEVICES omp=$OMP_NUM_THREADS\n"
                       f"{' '.join(real)} \"$@\"; rc=$?\necho end $(date +%s.%N)\nexit $rc\n")
    monkeypatch.setattr(training, "mace_executable", lambda: ["bash", str(wrapper)])
    empty = tmp_path / "empty.xyz"
    empty.write_text("")

    def member(m, train):
        return dict(output=str(tmp_path / f"member_{m}.model"), work_dir=str(tmp_path / f"w{m}"),
                    log_file=str(tmp_path / f"{m}.log"), name=f"member_{m}", train_file=str(train),
                    valid_file=str(cu_dataset / "valid.xyz"), e0s={"Cu": 0.0}, seed=m,
                    device="cpu", dtype="float64", epochs=2, hyper=TINY_MACE)

    members = [member(0, cu_dataset / "train.xyz"), member(1, cu_dataset / "train.xyz"),
               member(2, empty)]
    with pytest.raises(RuntimeError, match=r"1 of 3 members failed: member_2: mace_run_train"):
        train_members(members, threads=6, gpus=["4", "5"])
    # the others finished and were written; every member had its GPU and a third of the threads
    assert (tmp_path / "member_0.model").exists() and (tmp_path / "member_1.model").exists()
    assert not (tmp_path / "member_2.model").exists()
    spans = {}
    for m, gpu in ((0, "4"), (1, "5"), (2, "4")):
        log = (tmp_path / f"{m}.log").read_text()
        assert f"gpu={gpu} omp=2" in log, log[-2000:]
        start, end = (float(l.split()[1]) for l in log.splitlines() if l.startswith(("start", "end")))
        spans[m] = (start, end)
    (s0, e0), (s1, e1) = spans[0], spans[1]
    assert s1 < e0 and s0 < e1, spans  # they ran at the same time

    # the retry (Snakemake removed the job's outputs) trains only the failed member
    for m in (0, 1):
        (tmp_path / f"member_{m}.model").unlink()
    members[2] = member(2, cu_dataset / "train.xyz")
    train_members(members, threads=2, gpus=[])
    for m in (0, 1):
        assert "already finished: reusing" in (tmp_path / f"{m}.log").read_text()
    assert all((tmp_path / f"member_{m}.model").exists() for m in range(3))


def test_campaign_table_orders_columns():
    rows = [{"iteration": 1, "force_rmse_meV_per_A": 50.0, "n_labels": 20, "extra": 1},
            {"iteration": 0, "force_rmse_meV_per_A": 90.0, "n_labels": 10, "extra": 2}]
    t = campaign_table(rows)
    assert list(t["iteration"]) == [0, 1]
    assert list(t.columns) == ["iteration", "n_labels", "force_rmse_meV_per_A", "extra"]


def test_foundation_finetuning_arguments():
    common = dict(name="m", train_file="t", valid_file="v", work_dir="w", e0s={"Cu": -3.5},
                  seed=1, device="cpu", dtype="float64", epochs=5, hyper={})
    naive = mace_arguments(**common, foundation="/models/mp.model")
    assert "--foundation_model=/models/mp.model" in naive and "--multiheads_finetuning=False" in naive
    multi = mace_arguments(**common, foundation="/models/mp.model", multihead=True)
    assert "--multiheads_finetuning=True" in multi
    assert not any(a.startswith("--foundation_model") for a in mace_arguments(**common))


def test_e0s_stored_in_a_model_and_their_mismatch(cu_committee):
    stored = model_e0s(cu_committee[0])
    assert stored == {"Cu": pytest.approx(0.0)}  # what conftest trained it with
    assert e0s_mismatch({"Cu": 3.2}, stored) == {"Cu": pytest.approx(-3.2)}
    assert e0s_mismatch({"Cu": 0.4}, stored) == {}  # within 1 eV: same level of theory
    assert e0s_mismatch({"H": 5.0}, stored) == {}  # an element the model does not know


def test_bagging_draws_a_reproducible_bootstrap_sample_per_member_and_iteration():
    from alflow.training import bootstrap_indices

    a = bootstrap_indices(40, seed=1, iteration=2)
    assert len(a) == 40 and all(0 <= i < 40 for i in a)
    assert a == bootstrap_indices(40, seed=1, iteration=2)  # a rerun trains on the same file
    assert a != bootstrap_indices(40, seed=2, iteration=2)  # members differ in their data
    assert a != bootstrap_indices(40, seed=1, iteration=3)
    # with replacement: about 1 - 1/e of the frames are drawn, some of them twice
    distinct = [len(set(bootstrap_indices(200, seed=s, iteration=0))) / 200 for s in range(20)]
    assert 0.58 < sum(distinct) / len(distinct) < 0.68
