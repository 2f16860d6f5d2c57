"""Does training on stress make NPT walkers sample the reference's volumes?

Two tiny Cu campaigns with ASE's EMT as the reference and NPT walkers
(sampling.pressures), identical but for committee.stress_weight: 0 (stress not
trained, as before) and the default (null: trained, because walkers run NPT).
Then NPT MD with each final committee (the walkers' own integrator, ASE's
LangevinBAOAB) and with EMT itself, at the campaign's pressures and one beyond
them, at 600 K; the mean volume per atom over the second half of each run is
the point of the equation of state V(P).

    .venv/bin/python benchmarks/npt_stress.py [--steps 2000] [--seed 0]

Prints, per pressure, V_ref and each arm's V and relative error, the mean
absolute relative error per arm and their ratio (stress / no stress), and the
test-set stress RMSE of each arm (metrics.json); writes
benchmarks/out/npt_stress/npt_stress.csv. A finished campaign is reused.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from ase.calculators.emt import EMT
from ase.io import read

sys.path.insert(0, str(Path(__file__).resolve().parent))
from al_benchmark import EMT as EMT_CAMPAIGN  # noqa: E402
from al_benchmark import OUT, merge, snakemake  # noqa: E402
from alflow.metrics import load_committee  # noqa: E402
from alflow.sampling import Walker, langevin_integrator  # noqa: E402

PRESSURES = [0.0, 4.0]   # GPa, sampled by the walkers
PROBE = [0.0, 4.0, 8.0]  # GPa, where V(P) is compared (8: beyond the sampled range)
TEMPERATURE = 600.0

CAMPAIGN = merge(EMT_CAMPAIGN, {
    "iterations": 3,
    "bootstrap": {"n_structures": 8, "rattle": 0.05, "strain": 0.03},
    "test_set": {"n_structures": 24},
    "sampling": {"temperatures": [TEMPERATURE], "pressures": PRESSURES,
                 "walkers_per_condition": 1, "packs": 2, "steps": 200, "save_every": 10},
    # the levels of the recorded run (benchmarks/RESULTS.md), as deviations
    "selection": {"max_selected": 8, "chunk_size": 8, "trust_mode": "fixed",
                  "trust_lo": 0.02, "trust_hi": 0.5},
})
ARMS = {"no_stress": {"committee": {"stress_weight": 0.0}}, "stress": {}}


def mean_volume(atoms, calc, pressure: float, steps: int, seed: int) -> float:
    """Mean volume per atom (Å^3) over the second half of an NPT run."""
    atoms = atoms.copy()
    atoms.calc = calc
    walker = Walker(index=0, temperature=TEMPERATURE, pressure=pressure, structure=0)
    dyn = langevin_integrator(atoms, walker, 2.0, 0.02, np.random.default_rng(seed))
    volumes = []
    for step in range(steps):
        dyn.run(1)
        if step >= steps // 2:
            volumes.append(atoms.get_volume() / len(atoms))
    return float(np.mean(volumes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    out = OUT / "npt_stress"
    start = read(CAMPAIGN["structures"])
    rows = []
    ref = {p: mean_volume(start, EMT(), p, args.steps, args.seed) for p in PROBE}
    for arm, over in ARMS.items():
        wd = out / f"{arm}_seed{args.seed}"
        snakemake(wd, merge(CAMPAIGN, {**over, "seed": args.seed}), args.cores)
        last = CAMPAIGN["iterations"]
        models = sorted((wd / "results" / f"iter_{last:03d}" / "models").glob("member_*.model"))
        metrics = json.loads((wd / "results" / f"iter_{last:03d}" / "metrics.json").read_text())
        calc = load_committee([str(m) for m in models], "cpu", "float64")
        for p in PROBE:
            v = mean_volume(start, calc, p, args.steps, args.seed)
            rows.append({"arm": arm, "pressure_GPa": p, "V_ref": ref[p], "V": v,
                         "rel_error": v / ref[p] - 1,
                         "stress_rmse_meV_per_A3": metrics["stress_rmse_meV_per_A3"],
                         "force_rmse_meV_per_A": metrics["force_rmse_meV_per_A"]})
    table = pd.DataFrame(rows)
    table.to_csv(out / "npt_stress.csv", index=False)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    mae = table.assign(abs_err=table.rel_error.abs()).groupby("arm").abs_err.mean()
    print(f"\nmean |V/V_ref - 1| over {PROBE} GPa: " + ", ".join(
        f"{arm} {100 * v:.2f} %" for arm, v in mae.items()))
    print(f"stress / no_stress: {mae['stress'] / mae['no_stress']:.2f}")


if __name__ == "__main__":
    main()
