"""Train (or fine-tune, or after convergence copy) committee members: one
(rule train, wildcard m) or all of them at once (rule train_committee,
committee.train_in_one_job), each member in its own process on its own GPU."""
import os
import shutil

from alflow import gpu, logs
from alflow.io import read_frames, read_json, write_frames
from alflow.training import bootstrap_indices, member_index, member_seed, train_members

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
inp, p, com = sm.input, sm.params, sm.params.committee
members = [member_index(out) for out in sm.output]  # aligned with output and log
workdirs = [os.path.join(os.path.dirname(out), f"work_{m}") for out, m in zip(sm.output, members)]
committee = inp.get("previous", [])  # the whole previous committee
committee = [committee] if isinstance(committee, str) else list(committee)
previous = [next(f for f in committee if member_index(f) == m) for m in members] if committee else []
if "stats" in inp.keys() and read_json(inp.stats)["converged"]:
    for m, old, new in zip(members, previous, sm.output):
        log.info("campaign converged: member %s carried over unchanged", m)
        shutil.copyfile(old, new)
else:
    device = gpu.resolve_device(sm.config["committee"]["device"], sm.resources.gpu)
    slots = gpu.pin(sm.resources.gpu, device)  # CUDA_VISIBLE_DEVICES for this job
    finetune = bool(previous) and com["finetune"]
    foundations = previous if finetune else [inp.get("foundation")] * len(members)
    if foundations[0]:
        log.info("fine-tuning from %s", ", ".join(foundations))
    if len(members) > 1:
        log.info("training members %s at once on %s (%d threads)", members,
                 ", ".join(f"GPU {d}" for d in slots.devices) or device, sm.threads)
    e0s = read_json(inp.e0s)["e0s"]
    train_files = [inp.train] * len(members)
    if com["bagging"]:  # each member its own bootstrap resample of the training set
        frames = read_frames(inp.train)
        train_files = [os.path.join(os.path.dirname(out), f"bag_{m}.xyz") for out, m in
                       zip(sm.output, members)]
        for m, path in zip(members, train_files):
            picked = bootstrap_indices(len(frames), member_seed(p.seed, m), int(sm.wildcards.it))
            write_frames(path, [frames[i] for i in picked])
            log.info("bagging: member %s trains on %d draws, %d distinct of %d frames",
                     m, len(picked), len(set(picked)), len(frames))
    train_members([
        dict(output=out, work_dir=work, log_file=logf, name=f"member_{m}",
             train_file=train, valid_file=inp.valid, e0s=e0s, seed=member_seed(p.seed, m),
             device=device, dtype=com["dtype"],
             epochs=com["finetune_epochs"] if finetune else com["epochs"],
             hyper=sm.config["committee"]["mace"],  # all of it: valid_batch_size too
             stress_weight=p.stress_weight, foundation=foundation,
             multihead=not finetune and foundation is not None
             and com["foundation_finetuning"] == "multihead")
        for m, out, work, logf, foundation, train in zip(
            members, sm.output, workdirs, sm.log, foundations, train_files)
    ], threads=sm.threads, gpus=slots.devices if len(members) > 1 else [])
