"""Iteration-0 structures from short NVT MD with the foundation model
(unlabelled), split into label chunks."""
import time

import torch

from alflow import gpu, logs
from alflow.io import write_frames
from alflow.metrics import load_committee
from alflow.md import model_md_frames
from alflow.structures import load_structures, split_chunks

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
p = sm.params
md_cfg = sm.config["sampling"]  # device and dtype: execution, not params
device = gpu.resolve_device(md_cfg["device"], sm.resources.gpu)
slots = gpu.pin(sm.resources.gpu, device)  # CUDA_VISIBLE_DEVICES for this job
torch.set_num_threads(sm.threads)
start = time.perf_counter()
calc = load_committee([sm.input.model], device, md_cfg["dtype"])
frames = model_md_frames(calc, load_structures(sm.input.structures), p.temperatures, p.n,
                         **p.md, seed=p.seed, tag="bootstrap_md")
for path, chunk in zip(sm.output, split_chunks(frames, len(sm.output))):
    write_frames(path, chunk)
log.info("%d structures from MD with %s at %s K in %.1f s", len(frames), sm.input.model,
         ", ".join(f"{t:g}" for t in p.temperatures), time.perf_counter() - start)
