"""One table for the whole campaign: data, selection and test errors per iteration."""
from alflow import logs, metrics
from alflow.io import atomic_path, read_json

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
inp = sm.input
stats = {0: {}} | {i + 1: read_json(path) for i, path in enumerate(inp.stats)}
rows = []
for i, (m, d) in enumerate(zip(inp.metrics, inp.datasets)):
    s = stats[i]
    rows.append({"iteration": i, **read_json(d), **{k: s.get(k) for k in (
        "n_frames", "accurate_ratio", "n_selected", "converged")}, **read_json(m)})
table = metrics.campaign_table(rows)
with atomic_path(sm.output.table) as tmp:
    table.to_csv(tmp, index=False)
with atomic_path(sm.output.text) as tmp:
    tmp.write_text(metrics.headline(table).to_string(index=False, float_format=lambda x: f"{x:.4g}")
                   + "\n")
log.info("\n%s", table.to_string())
