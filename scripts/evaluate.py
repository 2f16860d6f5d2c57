"""Committee-mean (and per-member) errors on the held-out test set, and on the
training set under ``train``."""
import torch

from alflow import gpu, logs, metrics
from alflow.io import read_many, write_csv, write_json

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
com = sm.config["committee"]  # device: execution, not a param
device = gpu.resolve_device(com["device"], sm.resources.gpu)
slots = gpu.pin(sm.resources.gpu, device)  # CUDA_VISIBLE_DEVICES for this job
torch.set_num_threads(sm.threads)
calc = metrics.load_committee(sm.input.models, device, com["dtype"])
result, predictions = metrics.evaluate(calc, read_many(sm.input.test), return_predictions=True)
result["train"] = metrics.evaluate(calc, read_many([sm.input.train]))
write_csv(sm.output.predictions, predictions)
write_json(sm.output.metrics, result)
log.info("%s", result)
