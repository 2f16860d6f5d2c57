"""The deliverable: the final committee, one deployable model in the asked
precision, a LAMMPS model (mace-torch's own mace_create_lammps_model) when it
can be made here, and a model card."""
import shutil
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import torch

from alflow import logs, validation
from alflow.cp2k import load_template
from alflow.io import read_json, write_json
from alflow.metrics import ENERGY_SUMMARY, energy_report

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
inp, p, out = sm.input, sm.params, sm.output
for src, dst in zip(inp.models, out.committee):
    shutil.copyfile(src, dst)

validation.deployable_model(inp.models[0], out.model, p.model_dtype)  # member 0
lammps = (validation.lammps_export(out.model) if p.lammps else
          {"file": None, "made": False, "error": ["not asked for (validation.lammps: false)"]})
log.info("LAMMPS model: %s", lammps)

reference = sm.config["reference"]
tree = load_template(inp.template[0]).tree if reference["kind"] == "cp2k" and inp.template else None
calibrations = [read_json(c) for c in inp.calibrations]
audited = [c for c in calibrations if c.get("audit", {}).get("rmse") is not None]
last = calibrations[-1] if calibrations else {}
decided = next(((i, c) for i, c in enumerate(calibrations, start=1) if c.get("converged")), None)
metrics, data, valid = read_json(inp.metrics), read_json(inp.dataset), read_json(inp.validation)
card = {
    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    "model": {"file": Path(out.model).name, "dtype": p.model_dtype,
              "which": "committee member 0 (members differ only in seed or data; the whole "
                       "committee, for uncertainties, is in committee/)",
              "committee": [Path(c).name for c in out.committee], "lammps": lammps},
    "level_of_theory": validation.level_of_theory_summary(reference, tree),
    "training_set": {"n_train": data["n_train"], "n_valid": data["n_valid"],
                     "elements": sorted(p.elements),
                     # a dataset param: a change rebuilds the dataset, and this card
                     "max_force_eV_per_A": sm.config["dataset"]["max_force"]},
    "sampled_conditions": {"temperatures_K": p.sampling["temperatures"],
                           "pressures_GPa": p.sampling["pressures"]},
    "test_set": {k: metrics.get(k) for k in ("n_structures", *ENERGY_SUMMARY,
                                            "force_rmse_meV_per_A", "stress_rmse_meV_per_A3")},
    "audit": audited[-1]["audit"] if audited else None,
    "energy": energy_report(metrics, metrics.get("train"), audited[-1]["audit"] if audited else None),
    "calibration": {"scale": next((c["scale"] for c in reversed(calibrations) if c.get("scale")),
                                  None),
                    "spearman": next((c["spearman"] for c in reversed(calibrations)
                                      if c.get("spearman") is not None), None)},
    # the iteration whose calibration decided the stop (later ones carry it)
    "converged": decided is not None,
    "stop_reason": (f"iteration {decided[0]}: {decided[1]['stop_reason']}" if decided
                    else last.get("stop_reason")),
    "validation": {"stable": valid["stable"], "survival": valid["survival"],
                   "steps": valid["steps"], "conditions": {
                       name: {"survival": c["stability"]["survival"],
                              "rdf_distance": {k: d["distance"] for k, d in c["rdf"].items()}}
                       for name, c in valid["conditions"].items()}},
    "software": {"mace-torch": version("mace-torch"), "torch": torch.__version__,
                 "ase": version("ase")},
}
write_json(out.card, card)
Path(out.card_text).write_text(validation.card_markdown(card))
