"""Committee deviation vs the true force error on the frames labelled this
iteration: the audit estimate of the real error, the calibration scale, and
the stop rule."""
import pandas as pd

from alflow import calibration, logs
from alflow.io import read_json, read_many, write_csv, write_json

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
conv, it = sm.params.convergence, int(sm.wildcards.it)
stats = read_json(sm.input.stats)
table = calibration.frame_errors(read_many(sm.input.labels)).assign(iteration=it)
summary = calibration.summarize(table, stats["trust_lo"])
# the audit frames of the last audit_window iterations (this one included)
pooled = pd.concat([pd.read_csv(p) for p in sm.input.pooled] + [table], ignore_index=True)
summary["audit"] = calibration.pooled_audit([pooled], seed=sm.params.seed * 31 + it,
                                            level=conv["confidence"])
summary["scale"] = calibration.fit_scale(pooled["deviation"], pooled["true_max_force_error"])
summary["scale_method"] = ("median of true max atomic force error / deviation over the labelled "
                           f"frames of iterations {sorted(int(i) for i in pooled['iteration'].unique())}")
summary["walker_errors"] = calibration.walker_errors(table)  # read by the next sample step
n_walkers = stats.get("n_walkers") or 0
survival = (1 - stats["n_walkers_stopped_early"] / n_walkers) if n_walkers else None
summary["walker_survival"] = survival
summary["probe"] = stats.get("probe")
decision = calibration.stop_decision(summary["audit"], survival, conv["target_force_rmse"],
                                     conv["min_walker_survival"], probe=summary["probe"],
                                     energy_target=conv.get("target_energy_rmse"))
summary["converged"] = bool(stats.get("converged")) or decision["converged"]
summary["stop_reason"] = decision["reason"]
if stats.get("converged") and not stats.get("n_frames"):  # a no-op after the stop
    summary["stop_reason"] = "converged in an earlier iteration: nothing sampled"
elif stats.get("converged") and not decision["converged"]:  # the select step decided
    summary["stop_reason"] = (f"accurate share {stats['accurate_ratio']:.2f} reached "
                              "convergence.accurate_ratio")
write_csv(sm.output.table, table)
write_json(sm.output.summary, summary)
log.info("%s", summary)
if decision["converged"] and not stats.get("converged"):
    logs.to_terminal(f"iteration {it:03d}: the campaign has converged ({decision['reason']}); "
                     "the remaining iterations are no-ops")
