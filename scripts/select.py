"""Select the frames to label from all packs of an iteration."""
from alflow import logs, selection
from alflow.io import read_json, read_many, write_frames, write_json
from alflow.structures import split_chunks

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
cfg, inp = sm.params.selection, sm.input
frames = read_many(inp.packs)
previously_converged = "stats" in inp.keys() and read_json(inp.stats)["converged"]
chosen, stats = selection.select(frames, cfg["trust_lo"], cfg["trust_hi"],
                                 cfg["max_selected"], cfg["strategy"])
converged = previously_converged or selection.is_converged(stats, sm.params.convergence)
if converged:
    chosen = []
    stats["n_selected"] = 0
stats["converged"] = converged
for k, atoms in enumerate(chosen):
    atoms.info["origin"] = f"iter_{sm.wildcards.it}:{atoms.info['walker']}:{atoms.info['step']}"
for path, chunk in zip(sm.output.chunks, split_chunks(chosen, len(sm.output.chunks))):
    write_frames(path, chunk)
write_json(sm.output.stats, stats)
log.info("%s", stats)
