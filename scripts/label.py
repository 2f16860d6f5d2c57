"""Label one chunk with the reference; failures are kept aside, not lost."""
from alflow import logs
from alflow.cp2k import exit_on_sigterm
from alflow.config import ConfigError, ranks_per_structure
from alflow.labelling import RelabelRefused, SystematicFailure, label_chunk
from alflow.reference import make_reference

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
exit_on_sigterm()  # a cancelled job stops its CP2K runs too
# The level of theory is in params (provenance); the binary, the launcher and
# the time limit are read from the config: they never rerun a label.
# `concurrent` singlepoints at once share the job's ranks
concurrent = int(getattr(sm.resources, "concurrent", 1))
try:
    ranks = ranks_per_structure(sm.resources.tasks, concurrent)
except ConfigError as exc:
    logs.to_terminal(f"ERROR in label job {sm.wildcards.stage} chunk {sm.wildcards.c}: {exc}")
    raise
ref = make_reference(sm.config["reference"], mpi=sm.resources.mpi, tasks=ranks,
                     cpus_per_task=sm.resources.cpus_per_task, concurrent=concurrent)
log.info("%s", ref.describe())
try:
    counts = label_chunk(sm.input.structures, sm.output.labelled, sm.output.failed, ref,
                         sm.params.workdir, cache=sm.params.cache)
except (SystematicFailure, RelabelRefused) as exc:  # the reason belongs in Snakemake's output
    log.error("%s", exc)
    logs.to_terminal(f"ERROR in label job {sm.wildcards.stage} chunk {sm.wildcards.c}: {exc}")
    raise
log.info("labelled %(n_labelled)d of %(n_input)d structures, %(n_failed)d failed", counts)
if counts["n_failed"]:
    log.warning("failures by kind: %s (details in %s)", counts["failures"], sm.output.failed)
