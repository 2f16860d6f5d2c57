"""Run one pack of MD walkers with the committee of the previous iteration."""
from ase.data import atomic_numbers

from alflow import config as alcfg
from alflow import calibration, gpu, logs, sampling, validation
from alflow.io import read_frames, read_json, write_frames, write_json
from alflow.metrics import load_committee
from alflow.selection import calibrated_levels
from alflow.structures import load_structures

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
# the science from params; batched, batch_size, device, dtype from the config
s, p, inp = {**sm.config["sampling"], **sm.params.sampling}, sm.params, sm.input
device = gpu.resolve_device(s["device"], sm.resources.gpu)
slots = gpu.pin(sm.resources.gpu, device)  # CUDA_VISIBLE_DEVICES for this job
it, pack = int(sm.wildcards.it), int(sm.wildcards.p)

initial = load_structures(inp.structures)
walkers = sampling.make_walkers(s["temperatures"], s["pressures"], s["walkers_per_condition"],
                                len(initial))
mine = sampling.pack_walkers(walkers, alcfg.n_packs(sm.config), pack)
previous = None
if it > 1:  # each walker's last trusted state and what it did last iteration
    states = read_frames(inp.states)
    records = read_json(inp.records)["walkers"]
    if len(states) != len(mine) or len(records) != len(mine):
        raise ValueError(f"{inp.states} holds {len(states)} walker states, pack {pack} has "
                         f"{len(mine)} walkers: was the sampling grid changed mid-campaign?")
    previous = {r["walker"]: (st, r) for st, r in zip(states, records)}

if any(read_json(inp[k])["converged"] for k in ("stats", "calibration") if k in inp.keys()):
    log.info("campaign converged: no sampling, walker states carried over")
    write_frames(sm.output.frames, [])
    write_frames(sm.output.states, [previous[w.index][0] for w in mine])
    write_json(sm.output.records, {"walkers": [
        {**previous[w.index][1], "start": "converged", "steps": 0, "n_frames": 0,
         "stopped_early": False, "restarts": 0, "segments": []}
        for w in mine]})
else:
    import torch  # only here: a converged (no-op) iteration need not pay for it

    torch.set_num_threads(sm.threads)
    # trusted frames to restart stalled walkers from: the initial structures and,
    # every labelled training frame so far
    trusted = initial + read_frames(inp.dataset)
    # a walker whose labels showed a true error past the failure level restarts:
    # trust_hi in eV/Å of true error (calibrated), or the deviation level x the
    # measured error / deviation scale (fixed, adaptive)
    cal = read_json(inp.calibration) if "calibration" in inp.keys() else {}
    level = (p.trust_hi if p.trust_mode == "calibrated"
             else p.trust_hi * (cal.get("scale") or p.prior_scale))
    distrusted = sampling.distrusted_walkers(
        cal.get("walker_errors", {}), {w: r for w, (_, r) in previous.items()},
        level) if previous and s["start"] == "auto" else {}
    for w, err in sorted(distrusted.items()):
        log.info("walker %d restarts: a labelled frame of its last run was off by %.3g eV/Å, "
                 "past the failure level %.3g eV/Å", w, err, level)
    starts = sampling.plan_starts(
        mine, policy=s["start"], initial=initial, previous=previous, trusted=trusted,
        steps=s["steps"], min_run_fraction=s["min_run_fraction"], seed=p.seed * 100003 + it,
        distrusted=distrusted)
    calc = load_committee(inp.models, device, s["dtype"])
    # walkers stop where the (calibrated) predicted error reaches trust_hi
    scale = cal.get("scale")
    trust_hi = (calibrated_levels(0.0, p.trust_hi, scale, p.prior_scale)[1]
                if p.trust_mode == "calibrated"
                else p.trust_hi)
    log.info("walkers stop at a committee deviation of %.4g eV/Å%s", trust_hi,
             f"; biased towards the committee's disagreement, strength {s['bias']:g}"
             + (f", off inside {s['bias_wall']:g} x the closest pairs of the data"
                if s["bias_wall"] else "")
             if s["bias"] else "")
    species = sorted(atomic_numbers[e] for e in p.elements)
    describe = ((lambda atoms: sampling.structure_descriptor(calc, atoms, species))
                if p.descriptors else None)
    runs = sampling.explore_pack(
        mine, starts, calc, seeds=[p.seed * 100003 + it * 1009 + w.index for w in mine],
        batched=s["batched"], batch_size=s["batch_size"], describe=describe,
        steps=s["steps"], trusted=trusted, max_restarts=s["max_restarts"], bias=s["bias"],
        bias_wall=s["bias_wall"],
        timestep_fs=s["timestep_fs"], save_every=s["save_every"], friction=s["friction"],
        trust_hi=trust_hi, progress=log.info)
    frames = [a for run in runs for a in run.frames]
    states = [run.state for run in runs]
    records = {"walkers": [run.record for run in runs]}
    if "probe" in p.keys() and pack == 0:  # a target is set: can this committee run longer MD?
        records["probe"] = validation.probe(
            calc, initial, s["temperatures"], s["pressures"], **p.probe,
            seed=p.seed * 100003 + it + 7, hi=trust_hi, timestep_fs=s["timestep_fs"],
            friction=s["friction"], batched=s["batched"], batch_size=s["batch_size"],
            progress=log.info)
        log.info("production probe: %s (%s)", "stable" if records["probe"]["stable"] else
                 "NOT stable", calibration.ended_early(records["probe"]["runs"]) or
                 f"all {len(records['probe']['runs'])} runs completed")
    write_frames(sm.output.frames, frames)
    write_frames(sm.output.states, states)
    write_json(sm.output.records, records)
