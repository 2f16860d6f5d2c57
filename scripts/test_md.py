"""Held-out test structures from short MD with the reference itself (unlabelled),
split into label chunks."""
import time

from alflow import logs
from alflow.cp2k import exit_on_sigterm
from alflow.io import write_frames
from alflow.refmd import reference_md_frames
from alflow.structures import load_structures, split_chunks

sm = snakemake  # noqa: F821 (provided by Snakemake)
log = logs.to_file(sm.log[0])
exit_on_sigterm()  # a cancelled job stops its CP2K runs too
p = sm.params
md = p.md
start = time.perf_counter()
log.info("%d test frames from MD at %s K (timestep %g fs, %d equilibration steps, a frame every "
         "%d steps)", p.n, ", ".join(f"{t:g}" for t in p.temperatures), md["timestep_fs"],
         md["equilibration_steps"], md["interval_steps"])
frames = reference_md_frames(
    sm.config["reference"], load_structures(sm.input.structures), p.temperatures, p.n,
    timestep_fs=md["timestep_fs"], equilibration_steps=md["equilibration_steps"],
    interval_steps=md["interval_steps"], friction=md["friction"], seed=p.seed,
    workdir=p.workdir, mpi=sm.resources.mpi, tasks=sm.resources.tasks,
    cpus_per_task=sm.resources.cpus_per_task,
)
for path, chunk in zip(sm.output, split_chunks(frames, len(sm.output))):
    write_frames(path, chunk)
log.info("%d test structures from reference MD in %d chunks, %.1f s", len(frames), len(sm.output),
         time.perf_counter() - start)
