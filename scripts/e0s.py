"""Isolated-atom energies of the reference, once per element."""
from pathlib import Path

from alflow import logs
from alflow.io import write_json
from alflow.reference import isolated_atom_cached, make_reference

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
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
out = {"e0s": e0s}
foundation = sm.input.get("foundation")
if foundation:  # fine-tuning starts from a model with its own E0s
    from alflow.training import e0s_mismatch, model_e0s

    out["foundation_e0s"] = model_e0s(foundation)
    off = e0s_mismatch(e0s, out["foundation_e0s"]) if isinstance(e0s, dict) else {}
    if off:
        out["foundation_e0s_warning"] = note = (
            f"the foundation model {foundation} has isolated-atom energies that differ "
            f"from the reference's by {', '.join(f'{el}: {d:+.2f} eV' for el, d in off.items())}: "
            "it was trained on another level of theory (MACE-MP-0: PBE from VASP; MACE-OFF: "
            "wB97M-D3BJ). Fine-tuning uses the reference's E0s, so energies stay consistent "
            "with the labels, but the model must unlearn its old energy scale: expect the first "
            "iterations to need more data and epochs.")
        log.warning("%s", note)
        logs.to_terminal(f"WARNING (e0s): {note}")
write_json(sm.output[0], out)
