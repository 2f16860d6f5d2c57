"""Previous dataset + new labels -> train/valid of this iteration."""
from alflow import dataset, logs
from alflow.io import read_frames, read_many, write_frames, write_json
from alflow.structures import labelled_frames

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
inp = sm.input
tag = f"iter_{sm.wildcards.it}"
if "failed" in inp.keys():
    new = read_many(inp.new)
    failures = dataset.failure_counts(read_many(inp.failed))
else:  # a user-supplied labelled dataset replaces the bootstrap
    new = labelled_frames(inp.new)
    failures = {}
n_failed = sum(failures.values())
new, excluded = dataset.force_cap(new, sm.params.max_force)
if excluded:  # paid for and kept in the label chunks, not trained on
    log.warning("%s: %d labelled frames left out of training, their largest reference force "
                "above dataset.max_force %g eV/Å: %s", tag, len(excluded), sm.params.max_force,
                ", ".join(f"{a.info.get('origin', '?')} ({dataset.max_reference_force(a):.1f})"
                          for a in excluded))
train, valid = dataset.split(new, sm.params.valid_fraction, tag, seed=sm.params.seed)
n_new_train, n_new_valid = len(train), len(valid)
if "train" in inp.keys():
    train = read_frames(inp.train) + train
    valid = read_frames(inp.valid) + valid
if not train:
    reason = (f"all {len(excluded)} labels have a force above dataset.max_force "
              f"{sm.params.max_force} eV/Å" if excluded else dataset.empty_reason(failures))
    raise ValueError(f"{tag}: the training set is empty: {reason} "
                     f"(failed structures with their errors: {', '.join(inp.get('failed', []))})")
rate = dataset.failure_rate(len(new) + len(excluded), failures)
max_rate = sm.config["reference"]["max_failure_rate"]  # only flags: not a param
if rate > max_rate:
    log.warning("%s: %.0f %% of the labels failed (reference.max_failure_rate %.0f %%): %s",
                tag, 100 * rate, 100 * max_rate, failures)
write_frames(sm.output.train, train)
write_frames(sm.output.valid, valid)
summary = {"n_train": len(train), "n_valid": len(valid), "n_new_labels": len(new) + len(excluded),
           "n_new_train": n_new_train, "n_new_valid": n_new_valid, "n_label_failed": n_failed,
           "n_label_excluded": len(excluded),
           "label_excluded": {a.info.get("origin", "?"): dataset.max_reference_force(a)
                              for a in excluded},
           "label_failures": failures, "label_failure_rate": rate,
           "label_failures_high": rate > max_rate}
write_json(sm.output.summary, summary)
log.info("%s", summary)
