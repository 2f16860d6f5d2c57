"""Isolated-atom energies of the reference, once per element."""
from pathlib import Path

from alflow import logs
from alflow.cp2k import exit_on_sigterm
from alflow.io import write_json
from alflow.labelling import isolated_atom_cached
from alflow.reference import make_reference

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
exit_on_sigterm()  # a cancelled job stops its CP2K runs too
e0s = sm.params.e0s
if e0s == "auto":
    ref = make_reference(sm.config["reference"], mpi=sm.resources.mpi, tasks=sm.resources.tasks,
                         cpus_per_task=sm.resources.cpus_per_task)
    log.info("%s", ref.describe())
    e0s = {}
    for symbol in sm.params.elements:
        e0s[symbol] = isolated_atom_cached(ref, symbol, Path(sm.params.workdir) / symbol,
                                           sm.params.cache)
        log.info("E0(%s) = %.6f eV", symbol, e0s[symbol])
else:
    log.info("E0s from the config: %s", e0s)
write_json(sm.output[0], {"e0s": e0s})
