"""Campaign-wide figures up to iteration {it}: learning curve, test-set parity,
dataset growth and label failures, compute per rule."""
import pandas as pd

from alflow import logs, metrics, plots
from alflow.io import read_json

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
inp, it = sm.input, int(sm.wildcards.it)
datasets = [read_json(d) for d in inp.datasets]
table = metrics.campaign_table([metrics.campaign_row(i, d, read_json(m))
                                for i, (m, d) in enumerate(zip(inp.metrics, datasets))])
table["label_failures"] = [d.get("label_failures", {}) for d in datasets]
picks = plots.picks_table({i + 1: pd.read_csv(p) for i, p in enumerate(inp.calibration)})
plots.save(plots.learning_curve({"campaign": table}, picks), sm.output.learning_curve)
first = pd.read_csv(inp.first_predictions) if "first_predictions" in inp.keys() else None
plots.save(plots.parity(pd.read_csv(inp.predictions), f"iteration {it}", first),
           sm.output.parity)
plots.save(plots.dataset_growth(table), sm.output.dataset)
bench = plots.read_benchmarks(sm.params.benchmarks)
plots.save(plots.compute(bench, last_iteration=it), sm.output.compute)
log.info("iteration %d: %d iterations, %d benchmarked jobs", it, len(table), len(bench))
