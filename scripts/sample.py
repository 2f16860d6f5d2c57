"""Run one pack of MD walkers with the committee of the previous iteration."""
from alflow import gpu, logs, sampling
from alflow.io import read_frames, read_json, write_frames
from alflow.metrics import load_committee
from alflow.structures import load_structures

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
s, p, inp = sm.params.sampling, sm.params, sm.input
device = gpu.resolve_device(s["device"], sm.resources.gpu)
slots = gpu.pin(sm.resources.gpu, device)  # CUDA_VISIBLE_DEVICES for this job
it, pack = int(sm.wildcards.it), int(sm.wildcards.p)

# iteration 1 starts from the initial structures, later ones from each
# walker's last trusted state of the previous iteration (one frame per walker)
initial = load_structures(inp.states) if it == 1 else None
walkers = sampling.make_walkers(s["temperatures"], s["pressures"], s["walkers_per_condition"],
                                len(initial) if initial else 1)
mine = sampling.pack_walkers(walkers, p.n_packs, pack)
starts = [initial[w.structure] for w in mine] if initial else read_frames(inp.states)
if len(starts) != len(mine):
    raise ValueError(f"{inp.states} holds {len(starts)} walker states, pack {pack} has "
                     f"{len(mine)} walkers: was the sampling grid changed mid-campaign?")

if "stats" in inp.keys() and read_json(inp.stats)["converged"]:
    log.info("campaign converged: no sampling, walker states carried over")
    write_frames(sm.output.frames, [])
    write_frames(sm.output.states, starts)
else:
    import torch  # only here: a converged (no-op) iteration need not pay for it

    torch.set_num_threads(sm.threads)
    calc = load_committee(inp.models, device, s["dtype"])
    frames, states = [], []
    for walker, start in zip(mine, starts):
        result = sampling.run_walker(
            start, calc, walker, steps=s["steps"], timestep_fs=s["timestep_fs"],
            save_every=s["save_every"], friction=s["friction"], trust_hi=p.trust_hi,
            seed=p.seed * 100003 + it * 1009 + walker.index, progress=log.info)
        frames += result.frames
        states.append(result.state)
    write_frames(sm.output.frames, frames)
    write_frames(sm.output.states, states)
