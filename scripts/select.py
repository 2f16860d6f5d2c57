"""Select the frames to label from all packs of an iteration."""
from pathlib import Path

from alflow import logs, selection
from alflow.io import read_json, read_many, write_csv, write_frames, write_json
from alflow.labelling import relabel_allowed, relabel_refused, unpaid_structures
from alflow.structures import split_chunks

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
cfg, inp = sm.params.selection, sm.input
it = int(sm.wildcards.it)
frames = read_many(inp.packs)
records = [read_json(path) for path in inp.records]
walkers = [r for rec in records for r in rec["walkers"]]
# converged before: by the accurate share (select) or the audit (calibrate)
previously_converged = any(read_json(inp[k])["converged"] for k in ("stats", "calibration")
                           if k in inp.keys())
# calibrated levels: the previous iteration's calibration of the deviation
scale = read_json(inp.calibration).get("scale") if "calibration" in inp.keys() else None
lo, hi = selection.trust_levels(
    [selection.deviation(a) for a in frames], cfg["trust_lo"], cfg["trust_hi"],
    cfg["trust_mode"], cfg["adaptive"]["candidate_fraction"], cfg["adaptive"]["hi_factor"],
    scale=scale, prior_scale=cfg["prior_scale"])
chosen, stats = selection.select(
    frames, lo, hi, cfg["max_selected"], cfg["strategy"], seed=sm.params.seed * 7 + it,
    random_fraction=cfg["random_fraction"], label_past_hi=cfg["label_past_hi"],
    min_distance_fraction=cfg["min_distance_fraction"],
    accurate_below=lo if cfg["trust_mode"] == "calibrated" else cfg["trust_lo"],
    audit=cfg["audit"])
converged = previously_converged or selection.is_converged(stats, sm.params.convergence)
if converged:
    chosen = []
    stats.update(n_selected=0, n_selected_random=0, n_selected_audit=0, n_past_hi_selected=0)
stats["converged"] = converged
stats["trust_mode"] = cfg["trust_mode"]
stats["calibration_scale"] = scale if cfg["trust_mode"] == "calibrated" else None
stats["n_walkers"] = len(walkers)
stats["n_walkers_stopped_early"] = sum(bool(r.get("stopped_early")) for r in walkers)
stats["n_walkers_restarted"] = sum(r["start"].startswith("restart") or r.get("restarts", 0) > 0
                                   for r in walkers)
# the production probe of this committee (the first pack ran it; only with a target)
stats["probe"] = next((rec["probe"] for rec in records if "probe" in rec), None)
stats["walker_steps_mean"] = (sum(r["steps"] for r in walkers) / len(walkers)) if walkers else None
for atoms in chosen:
    atoms.info["origin"] = f"iter_{sm.wildcards.it}:{atoms.info['walker']}:{atoms.info['step']}"
# A finished iteration whose selection changed would pay for new labels:
# refuse here, before its label jobs (and their finished outputs) are touched.
n_new = unpaid_structures(chosen, Path(sm.output.stats).parent.parent / "label")
if n_new and not relabel_allowed():
    exc = relabel_refused(f"iteration {sm.wildcards.it}", n_new)
    log.error("%s", exc)
    logs.to_terminal(f"ERROR in select job of iteration {sm.wildcards.it}: {exc}")
    raise exc
for path, chunk in zip(sm.output.chunks, split_chunks(chosen, len(sm.output.chunks))):
    write_frames(path, chunk)
write_csv(sm.output.frames, selection.frame_table(frames, lo, hi, chosen))
write_json(sm.output.stats, stats)
log.info("%s", stats)
