"""How many labels of the al_benchmark campaigns were collisions: frames with
two atoms closer than ``min_distance_fraction`` x the sum of their covalent
radii (``alflow.selection.is_sane``), and frames without such overlap whose
largest reference force is past the force cap anyway.

    .venv/bin/python benchmarks/collision_labels.py [--fraction 0.6] [--cap 20]

Reads benchmarks/out/al_benchmark/<system>/<arm>_seed<n>/results/iter_*/label/chunk_*.xyz
and prints one row per system and arm.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import al_benchmark as alb  # noqa: E402


def main() -> None:
    from alflow.io import read_frames
    from alflow.selection import is_sane

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fraction", type=float, default=0.6, help="min_distance_fraction")
    ap.add_argument("--cap", type=float, default=20.0, help="eV/Å, dataset.max_force")
    args = ap.parse_args()
    rows = defaultdict(lambda: np.zeros(4, dtype=int))  # labels, overlapping, of those past cap, past cap
    for chunk in sorted((alb.OUT / "al_benchmark").glob("*/*_seed*/results/iter_*/label/chunk_*.xyz")):
        campaign = chunk.parents[3].name
        key = (chunk.parents[4].name, campaign.rsplit("_seed", 1)[0])
        for atoms in read_frames(chunk):
            ref = atoms.arrays.get("REF_forces")
            past_cap = ref is not None and float(np.linalg.norm(ref, axis=1).max()) > args.cap
            overlap = not is_sane(atoms, args.fraction)
            rows[key] += (1, overlap, overlap and past_cap, past_cap and not overlap)
    print(f"labels with atoms closer than {args.fraction} x the sum of covalent radii, and labels "
          f"without overlap whose reference force is past {args.cap} eV/Å:")
    print(f"{'system':8s} {'arm':24s} {'labels':>7s} {'overlap':>8s} {'(>cap)':>7s} {'>cap, no overlap':>17s}")
    for (system, arm), (n, over, over_cap, cap) in sorted(rows.items()):
        print(f"{system:8s} {arm:24s} {n:7d} {over:8d} {over_cap:7d} {cap:17d}")


if __name__ == "__main__":
    main()
