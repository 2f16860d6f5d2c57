"""The foundation model's own isolated-atom energies against the reference's:
fine-tuning uses the reference's E0s, a warning says when the model must
unlearn another energy scale."""
from alflow import logs
from alflow.io import read_json, write_json
from alflow.training import e0s_mismatch, model_e0s

sm = snakemake  # noqa: F821
log = logs.to_file(sm.log[0])
e0s = read_json(sm.input.e0s)["e0s"]
out = {"foundation_e0s": model_e0s(sm.input.foundation)}
off = e0s_mismatch(e0s, out["foundation_e0s"]) if isinstance(e0s, dict) else {}  # average: none
if off:
    out["warning"] = note = (
        f"the foundation model {sm.input.foundation} has isolated-atom energies that differ "
        f"from the reference's by {', '.join(f'{el}: {d:+.2f} eV' for el, d in off.items())}: "
        "it was trained on another level of theory (MACE-MP-0: PBE from VASP; MACE-OFF: "
        "wB97M-D3BJ). Fine-tuning uses the reference's E0s, so energies stay consistent "
        "with the labels, but the model must unlearn its old energy scale: expect the first "
        "iterations to need more data and epochs.")
    log.warning("%s", note)
    logs.to_terminal(f"WARNING (foundation_e0s): {note}")
log.info("foundation E0s: %s", out["foundation_e0s"])
write_json(sm.output[0], out)
