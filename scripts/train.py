"""Train (or fine-tune, or after convergence copy) one committee member."""
import shutil

from alflow import gpu, logs
from alflow.io import read_json
from alflow.training import train_member

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
inp, p, com = sm.input, sm.params, sm.params.committee
device = gpu.resolve_device(com["device"], sm.resources.gpu)
slots = gpu.pin(sm.resources.gpu, device)  # CUDA_VISIBLE_DEVICES for this job
if "stats" in inp.keys() and read_json(inp.stats)["converged"]:
    log.info("campaign converged: member %s carried over unchanged", sm.wildcards.m)
    shutil.copyfile(inp.previous, sm.output[0])
else:
    finetune = "previous" in inp.keys() and com["finetune"]
    foundation = inp.previous if finetune else inp.get("foundation")
    if foundation:
        log.info("fine-tuning from %s", foundation)
    train_member(
        output=sm.output[0], work_dir=p.workdir, log_file=sm.log[0], threads=sm.threads,
        name=f"member_{sm.wildcards.m}", train_file=inp.train,
        valid_file=inp.valid, e0s=read_json(inp.e0s)["e0s"], seed=p.seed,
        device=device, dtype=com["dtype"],
        epochs=com["finetune_epochs"] if finetune else com["epochs"],
        hyper=com["mace"], foundation=foundation,
        multihead=not finetune and foundation is not None
        and com["foundation_finetuning"] == "multihead",
    )
