"""Committee-mean errors on the held-out test set."""
import torch

from alflow import logs, metrics
from alflow.io import read_many, write_json

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
torch.set_num_threads(sm.threads)
calc = metrics.load_committee(sm.input.models, sm.params.device, sm.params.dtype)
result = metrics.evaluate(calc, read_many(sm.input.test))
write_json(sm.output[0], result)
log.info("%s", result)
