"""Production validation of the final committee: long MD at every sampled
condition and a hotter one, its stability, and its structure against the
reference MD of the test set (alflow.validation.run_validation)."""
import pandas as pd
import torch

from alflow import gpu, logs, plots, selection, validation
from alflow.io import read_json, read_many, write_frames, write_json
from alflow.metrics import energy_report, load_committee
from alflow.structures import load_structures

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
inp, p = sm.input, sm.params
v, s, sel = p.validation, {**sm.config["sampling"], **p.sampling}, p.selection
steps = v["steps"] or 10 * s["steps"]
device = gpu.resolve_device(s["device"], sm.resources.gpu)
slots = gpu.pin(sm.resources.gpu, device)
torch.set_num_threads(sm.threads)

# the deviation levels of the last calibration: the cap stops a run
calibrations = [read_json(c) for c in inp.calibrations]
scales = [c.get("scale") for c in calibrations]
scale = next((x for x in reversed(scales) if x), None)
mode = "fixed" if sel["trust_mode"] == "adaptive" else sel["trust_mode"]
lo, hi = selection.trust_levels(None, sel["trust_lo"], sel["trust_hi"], mode, scale=scale,
                                prior_scale=sel["prior_scale"])
log.info("validation: %d steps per run, cap at a committee deviation of %.4g eV/Å", steps, hi)

result = validation.run_validation(
    load_committee(inp.models, device, s["dtype"]), load_structures(inp.structures),
    validation.conditions(s["temperatures"], s["pressures"], v["hot_factor"]),
    seeds=v["seeds"], steps=steps, seed=p.seed, lo=lo, hi=hi,
    min_distance_fraction=sel["min_distance_fraction"],
    reference=read_many(inp.test) if p.test_source == "reference_md" else [],
    rdf_rmax=v["rdf_rmax"], timestep_fs=s["timestep_fs"], save_every=v["save_every"],
    friction=s["friction"], batched=s["batched"], batch_size=s["batch_size"], progress=log.info)
summary = result["summary"]
summary["deviation_levels"] = {"trust_lo": lo, "trust_hi": hi, "scale": scale, "mode": mode}
final_metrics = read_json(inp.metrics)  # the final committee on the test and training sets
audits = [c["audit"] for c in calibrations if (c.get("audit") or {}).get("rmse") is not None]
summary["energy"] = energy_report(final_metrics, final_metrics.get("train"),
                                  audits[-1] if audits else None)  # as the model card
write_frames(sm.output.trajectories, result["frames"])
write_json(sm.output.summary, summary)
plots.save(plots.validation_stability(result["runs"], steps, pd.DataFrame(
    result["trace"], columns=["run", "step", "deviation"]), cap=hi), sm.output.stability)
plots.save(plots.validation_rdf({k: f for k, f in result["rdfs"].items() if f}), sm.output.rdf)
warning = validation.instability_warning(summary, sm.output.summary)
if warning:
    logs.to_terminal(warning)
log.info("validation: %s (%d of %d runs completed)", "stable" if summary["stable"] else "UNSTABLE",
         sum(r["failed_at_step"] is None for r in result["runs"]), len(result["runs"]))
