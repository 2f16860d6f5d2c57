"""Perturbed copies of the initial structures, split into label chunks."""
from alflow import logs
from alflow.io import write_frames
from alflow.structures import load_structures, perturb, split_chunks

sm = snakemake  # noqa: F821 (provided by Snakemake)
log = logs.to_file(sm.log[0])
p = sm.params
frames = perturb(load_structures(sm.input[0]), p.n, p.rattle, p.strain, p.seed, p.tag)
for path, chunk in zip(sm.output, split_chunks(frames, len(sm.output))):
    write_frames(path, chunk)
log.info("%d %s structures (rattle %.3f Å, strain %.3f) in %d chunks",
         len(frames), p.tag, p.rattle, p.strain, len(sm.output))
