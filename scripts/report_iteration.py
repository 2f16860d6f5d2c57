"""Figures of one iteration: committee deviation of the sampled frames,
calibration of the deviation against the true error, walker exploration."""
import pandas as pd

from alflow import logs, plots
from alflow.io import read_json

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
inp, it = sm.input, int(sm.wildcards.it)
stats = read_json(inp.stats)
lo, hi = stats["trust_lo"], stats["trust_hi"]
frames = pd.read_csv(inp.frames)
plots.save(plots.deviation_histogram(frames, lo, hi, f"Iteration {it}: committee deviation of "
                                     f"{len(frames)} sampled frames"), sm.output.deviation)
summary = read_json(inp.calibration_summary)
plots.save(plots.calibration(pd.read_csv(inp.calibration), lo, hi, summary.get("spearman"),
                             scale=summary.get("scale")), sm.output.calibration)
walkers = [r for path in inp.records for r in read_json(path)["walkers"]]
plots.save(plots.exploration(walkers, sm.params.steps), sm.output.exploration)
log.info("iteration %d: %d frames, %d walkers", it, len(frames), len(walkers))
