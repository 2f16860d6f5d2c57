"""Committee deviation vs the true force error on the frames labelled this iteration."""
from alflow import calibration, logs
from alflow.io import atomic_path, read_json, read_many, write_json

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
table = calibration.frame_errors(read_many(sm.input.labels))
summary = calibration.summarize(table, read_json(sm.input.stats)["trust_lo"])
with atomic_path(sm.output.table) as tmp:
    table.to_csv(tmp, index=False)
write_json(sm.output.summary, summary)
log.info("%s", summary)
