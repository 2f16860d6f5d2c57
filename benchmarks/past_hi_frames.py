"""What are the frames where walkers stopped past trust_hi worth?

Takes a finished campaign, labels every frame where a walker stopped because
its committee deviation reached trust_hi (the frames `selection.label_past_hi`
would add) with the campaign's own reference, and prints per iteration: how
many there were, how many pass the sanity check, their deviation, and the
committee's true max atomic force error on them, next to the true error of the
frames the campaign did select (its calibration.json).

    .venv/bin/python benchmarks/past_hi_frames.py results [config/demo.yaml]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent

from alflow.calibration import frame_errors  # noqa: E402
from alflow.io import read_frames  # noqa: E402
from alflow.labelling import label_cached  # noqa: E402
from alflow.reference import LabelFailure, make_reference  # noqa: E402
from alflow.selection import deviation, is_sane  # noqa: E402


def main() -> None:
    results = Path(sys.argv[1] if len(sys.argv) > 1 else "results")
    cfg = yaml.safe_load(Path(sys.argv[2] if len(sys.argv) > 2 else REPO / "config" / "demo.yaml")
                         .read_text())
    ref_cfg = cfg["reference"]
    ref = make_reference(ref_cfg, mpi="", tasks=1, cpus_per_task=1)
    fraction = cfg["selection"].get("min_distance_fraction", 0.6)
    print(f"{'iteration':>9} {'stops':>5} {'sane':>4} {'labelled':>8} {'deviation':>9} "
          f"{'true err':>8} {'err/dev':>7} {'selected frames: true err':>26}")
    for it_dir in sorted(results.glob("iter_*")):
        packs = sorted(it_dir.glob("sample/pack_*.xyz"))
        if not packs:
            continue
        stops = [a for p in packs for a in read_frames(p) if a.info.get("stop") == "deviation"]
        sane = [a for a in stops if is_sane(a, fraction)]
        labelled = []
        for k, atoms in enumerate(sane):
            try:
                labelled.append(label_cached(ref, atoms, it_dir / "past_hi_work" / f"s{k}"))
            except LabelFailure as exc:
                print(f"  {it_dir.name}: stop frame {k} not labelled: {exc}")
        table = frame_errors(labelled)
        cal = it_dir / "calibration.json"
        sel = json.loads(cal.read_text()).get("mean_true_error") if cal.exists() else None
        dev = np.mean([deviation(a) for a in sane]) if sane else float("nan")
        err = table["true_max_force_error"].mean() if len(table) else float("nan")
        print(f"{it_dir.name:>9} {len(stops):5d} {len(sane):4d} {len(table):8d} {dev:9.3f} "
              f"{err:8.3f} {err / dev if dev else float('nan'):7.2f} "
              f"{sel if sel is not None else float('nan'):26.3f}")


if __name__ == "__main__":
    main()
