"""One table for the whole campaign: data, selection, test errors and compute per iteration."""
from alflow import compute, logs, metrics
from alflow.io import atomic_path, read_json, write_csv

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
inp = sm.input
later = {i + 1: (read_json(s), read_json(c)) for i, (s, c) in
         enumerate(zip(inp.stats, inp.calibration))}
bench = compute.read_benchmarks(sm.params.benchmarks)
hours = compute.hours_per_iteration(bench, range(len(inp.metrics)))
rows = [metrics.campaign_row(i, read_json(d), read_json(m), *later.get(i, ()),
                             audit=later.get(i + 1, (None, {}))[1].get("audit")) | hours[i]
        for i, (m, d) in enumerate(zip(inp.metrics, inp.datasets))]
if not bench["resources_known"].all():
    log.warning("%d of %d benchmark files record no resources (run with --benchmark-extended): "
                "counted as 1 core, no GPU", (~bench["resources_known"]).sum(), len(bench))
table = metrics.campaign_table(rows)
write_csv(sm.output.table, table)
with atomic_path(sm.output.text) as tmp:
    tmp.write_text(metrics.headline(table).to_string(index=False, float_format=lambda x: f"{x:.4g}")
                   + "\n")
log.info("\n%s", table.to_string())
