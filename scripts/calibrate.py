"""Committee deviation vs the true force error on the frames labelled this iteration."""
from alflow import calibration, logs
from alflow.io import read_json, read_many, write_csv, write_json

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
table = calibration.frame_errors(read_many(sm.input.labels))
summary = calibration.summarize(table, read_json(sm.input.stats)["trust_lo"])
write_csv(sm.output.table, table)
write_json(sm.output.summary, summary)
log.info("%s", summary)
