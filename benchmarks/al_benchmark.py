"""Where does active learning pay off? Active vs random vs reference MD, in and out of distribution.

Per system and seed, every arm gets the same bootstrap, label budget per
iteration and seeds:

- ``active``: the campaign with the workflow's defaults (calibrated trust
  levels, committee selection, 2 audit frames per iteration);
- variants of it (``size4``, ``bagging``, ``size4_bagging``): the committee
  measurements behind the defaults; ``size4_2members`` (and so on) scores the
  first 2 members of each 4-member committee, separating what its data is
  worth from the plain benefit of averaging 4 models;
- ``random``: ``selection.strategy: random``, uniform over the sane sampled
  frames;
- ``wide`` and ``wide_random``: active and random from a wider pool, walkers
  also at 1.3x the hottest temperature and in cells strained by ±3 % (the
  out-of-distribution conditions): does a pool with more variety let the
  committee's picks pay off? Compared with each other; ``wide_bagging``: the
  same pool with the default committee (4 members, bagging), compared with
  ``wide_random`` and with ``size4_bagging`` (the narrow pool);
- ``foundation``, ``foundation_bagging``, ``foundation_random`` (Cu/EMT
  only): 4 members fine-tuned from one pretrained model, without and with
  bagging, and random picks with that committee. No foundation model can be
  downloaded here, so a stand-in is made once (foundation_arm): a MACE of the
  campaign's architecture trained on EMT labels of rattled and strained cells
  of 7 fcc metals and their binary alloys, no MD;
- ``biased``, ``biased_strong``: the defaults (4 members, bagging) with
  walkers biased towards the committee's disagreement (``sampling.bias`` 0.3
  and 1.0, hyperactive learning): does a pool the committee itself widens
  let active pay off? Compared with ``size4_bagging``;
- ``walled``, ``walled_strong``: the same biases, off while two atoms are
  closer than 0.9 x the closest pair of their elements in the data
  (``sampling.bias_wall``). Compared with ``size4_bagging`` and the arm
  without the wall;
- ``wide_walled``: both levers that widened the pool, the wide pool and the
  walled bias 0.3, with the default committee: do they add up? Compared with
  ``wide_bagging``, ``walled`` and ``wide_random``;
- ``refmd``: no active learning: committees trained on N frames of MD with the
  reference itself at the sampling temperatures (ab initio MD), N = each
  label count of the active arm; its cost counts every MD step as a reference
  call (the frames used are listed next to it).

Test sets, one per system, made by the workflow itself and shared by all arms
and seeds: ``in`` (reference MD at the sampling temperatures) and ``ood``
(reference MD at 1.3x the highest sampling temperature, in cells strained by
-3 % and +3 %). Every committee of every iteration is evaluated on both: the
force RMSE and the 95th percentile over frames of the max atomic force error.

Ratios are computed on the learning curves averaged over seeds; their 95 %
intervals resample the seeds (paired: one resample serves every arm).

The stop rule is replayed from each active campaign's own records (the audit
frames of calibration.csv, pooled over 1 and 2 iterations, and the walker
survival): a campaign given a target is the same campaign up to the
iteration where it stops, so the stop for several targets comes from one
run. It reports the stop iteration, the test RMSE of the committee the
campaign ends with, the iteration at which the test RMSE first reached the
target, and what held the rule back where a stop was due.

    .venv/bin/python benchmarks/al_benchmark.py --systems emt --seeds 0 1 2 3 4
    .venv/bin/python benchmarks/al_benchmark.py --systems emt --arms size4 bagging --seeds 0 1 2
    .venv/bin/python benchmarks/al_benchmark.py --systems emt --arms size4_bagging random foundation foundation_bagging foundation_random --seeds 0 1 2
    .venv/bin/python benchmarks/al_benchmark.py --systems emt --arms biased biased_strong size4_bagging random --seeds 0 1 2
    .venv/bin/python benchmarks/al_benchmark.py --systems water --arms walled --seeds 0 1 2
    .venv/bin/python benchmarks/al_benchmark.py --systems emt --arms wide_bagging wide_random --seeds 0 1 2
    .venv/bin/python benchmarks/al_benchmark.py --report-only     # tables of what has finished

Finished campaigns are reused (a later run picks up where an earlier one
stopped). Writes benchmarks/out/al_benchmark/{curves,summary,stops}.csv.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
OUT = REPO / "benchmarks" / "out"
BENCH = OUT / "al_benchmark"

# Cu with ASE's EMT: labels cost nothing; a campaign is a few minutes.
EMT = {
    "structures": str(REPO / "tests" / "data" / "cu_16.xyz"),
    "iterations": 3,
    "reference": {"kind": "ase", "e0s": "auto",
                  "ase": {"calculator": "ase.calculators.emt.EMT"}},
    "bootstrap": {"n_structures": 8, "rattle": 0.05, "strain": 0.02},
    "test_set": {"source": "reference_md", "n_structures": 40,
                 "md": {"timestep_fs": 2.0, "equilibration_steps": 200, "interval_steps": 25}},
    "committee": {"size": 2, "epochs": 30, "finetune_epochs": 12, "dtype": "float64",
                  # model and stage_two: the workflow's defaults (since 2026-12-07;
                  # before: model MACE, no stage two, eval_interval 10)
                  "mace": {"r_max": 4.5, "num_channels": 16, "max_L": 0,
                           "num_interactions": 2, "correlation": 2, "batch_size": 4,
                           "valid_batch_size": 8, "lr": 0.01, "energy_weight": 10.0,
                           "forces_weight": 100.0, "patience": 1000}},
    "sampling": {"temperatures": [600, 1200], "walkers_per_condition": 2, "packs": 2,
                 "steps": 150, "save_every": 5, "timestep_fs": 2.0, "dtype": "float32"},
    "selection": {"trust_mode": "calibrated", "trust_lo": 0.05, "trust_hi": 3.0,
                  "max_selected": 8, "chunk_size": 8, "audit": 2},
    # full budgets; audit_window 2 (the default before 2026-11-30) also pools the
    # calibration scale over 2 iterations: kept so that finished campaigns stay
    # valid. stops() replays the stop rule with windows 1 and 2 from the audits
    "convergence": {"target_force_rmse": None, "accurate_ratio": 1.0, "audit_window": 2},
    "validation": {"steps": 300, "seeds": 2, "lammps": False},
    "resources": {"label": {"mpi": ""}},
}

# The demo campaign (config/demo.yaml): 8 water molecules, CP2K GFN1-xTB.
WATER = {
    "iterations": 3,
    "test_set": {"n_structures": 24},
    "convergence": {"target_force_rmse": None, "accurate_ratio": 1.0},
}

SYSTEMS = {"emt": EMT, "water": WATER}
# targets (meV/Å) at which the stop rule is read
TARGETS = {"emt": [40, 60, 100], "water": [100, 150, 200, 350]}
POOL = {"emt": 48, "water": 32}  # reference-MD frames available to the refmd arm
ARMS = {
    "active": {},
    "random": {"selection": {"strategy": "random"}},
    "size4": {"committee": {"size": 4}},
    "bagging": {"committee": {"bagging": True}},
    "size4_bagging": {"committee": {"size": 4, "bagging": True}},
    "past_hi": {"selection": {"label_past_hi": True}},
    # a wider pool (wide_pool): walkers also at 1.3x the hottest temperature
    # and in cells strained by ±3 %, the out-of-distribution test conditions
    "wide": {},
    "wide_random": {"selection": {"strategy": "random"}},
    "wide_bagging": {"committee": {"size": 4, "bagging": True}},
    # members fine-tuned from one pretrained model (foundation_arm), a stand-in
    # for MACE-MP-0 made here: no foundation model can be downloaded
    "foundation": {"committee": {"size": 4}},
    "foundation_bagging": {"committee": {"size": 4, "bagging": True}},
    "foundation_random": {"committee": {"size": 4}, "selection": {"strategy": "random"}},
    # the defaults, with walkers biased towards the committee's disagreement
    # (sampling.bias: hyperactive learning), at two strengths
    "biased": {"committee": {"size": 4, "bagging": True}, "sampling": {"bias": 0.3}},
    "biased_strong": {"committee": {"size": 4, "bagging": True}, "sampling": {"bias": 1.0}},
    # the same, the bias off while atoms are closer than 0.9 x the closest pair
    # of their elements in the data (sampling.bias_wall)
    "walled": {"committee": {"size": 4, "bagging": True}, "sampling": {"bias": 0.3, "bias_wall": 0.9}},
    "walled_strong": {"committee": {"size": 4, "bagging": True},
                      "sampling": {"bias": 1.0, "bias_wall": 0.9}},
    # the two levers that widened what was sampled, together: the wide pool
    # and the walled bias 0.3, with the default committee
    "wide_walled": {"committee": {"size": 4, "bagging": True},
                    "sampling": {"bias": 0.3, "bias_wall": 0.9}},
    "refmd": None,  # not a campaign of its own: see refmd_arm
}
# arms compared with each other besides random and reference MD
VERSUS = {"wide": ["wide_random"], "wide_bagging": ["wide_random", "size4_bagging"],
          "foundation": ["size4_bagging", "foundation_random"],
          "foundation_bagging": ["size4_bagging", "foundation_random"],
          "biased": ["size4_bagging"], "biased_strong": ["size4_bagging"],
          "walled": ["size4_bagging", "biased"], "walled_strong": ["size4_bagging", "biased_strong"],
          "wide_walled": ["wide_bagging", "walled", "wide_random"]}


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def base_config(system: str) -> dict:
    default = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg = merge(default, SYSTEMS[system])
    for keys in (("structures",), ("reference", "cp2k", "template")):
        node = cfg
        for k in keys[:-1]:
            node = node[k]
        if not Path(node[keys[-1]]).is_absolute():
            node[keys[-1]] = str(REPO / node[keys[-1]])
    return cfg


def snakemake(workdir: Path, cfg: dict, cores: int, targets: list[str] = ()) -> float:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    # a later version of the workflow (or a checkout elsewhere: the structures'
    # path is an input) resumes these campaigns: only changed science reruns
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml",
           "--cores", str(cores), "--rerun-triggers", "params"]
    if (workdir / ".snakemake" / "locks").is_dir():  # a killed earlier run of this benchmark
        subprocess.run(cmd + ["--unlock"], cwd=workdir, capture_output=True)
    t0 = time.monotonic()
    proc = subprocess.run(cmd + ["--rerun-incomplete", *targets], cwd=workdir,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"campaign in {workdir} failed:\n{proc.stderr[-4000:]}")
    return time.monotonic() - t0


def stability(wd: Path) -> dict:
    """The validation verdict of a campaign's final committee (production MD
    at the sampled temperatures and 1.25x the highest), when it was run."""
    path = wd / "results" / "validation" / "summary.json"
    if not path.exists():
        return {}
    s = json.loads(path.read_text())
    out = {"stable": s["stable"], "survival": s["survival"]}
    for name, c in s["conditions"].items():
        out[f"survival {name}"] = c["stability"]["survival"]
    return out


def reference_md_set(wd: Path, cfg: dict, cores: int) -> list:
    """Labelled reference-MD frames (the workflow's test-set stage alone)."""
    from alflow.config import n_chunks
    from alflow.io import read_many

    n = n_chunks(cfg["test_set"]["n_structures"], cfg["selection"]["chunk_size"])
    targets = [f"results/test/label/chunk_{c}.xyz" for c in range(n)] + \
              ["results/reference/e0s.json"]
    if not all((wd / t).exists() for t in targets):
        snakemake(wd, cfg, cores, targets)
    return read_many([wd / t for t in targets[:-1]])


def strained(structures_path: str, strains=(-0.03, 0.03)) -> list:
    from alflow.structures import load_structures

    out = []
    for atoms in load_structures(structures_path):
        for eps in strains:
            a = atoms.copy()
            a.set_cell(a.cell * (1 + eps), scale_atoms=True)
            out.append(a)
    return out


def test_sets(system: str, cfg: dict, cores: int) -> tuple[dict, dict]:
    """{'in': path, 'ood': path} and the E0s, made once per system."""
    from alflow.io import read_json, write_frames

    root = BENCH / system
    paths = {"in": root / "test_in.xyz", "ood": root / "test_ood.xyz"}
    if not paths["in"].exists():
        write_frames(paths["in"], reference_md_set(root / "reference_in", merge(cfg, {
            "iterations": 0}), cores))
    if not paths["ood"].exists():
        structures = root / "ood_structures.xyz"
        write_frames(structures, strained(cfg["structures"]))
        hot = 1.3 * max(cfg["sampling"]["temperatures"])
        write_frames(paths["ood"], reference_md_set(root / "reference_ood", merge(cfg, {
            "iterations": 0, "structures": str(structures),
            "sampling": {"temperatures": [hot]}}), cores))
    e0s = read_json(root / "reference_in" / "results" / "reference" / "e0s.json")["e0s"]
    return {k: str(v) for k, v in paths.items()}, e0s


def refmd_arm(system: str, cfg: dict, seed: int, sizes: list[int], tests: dict, e0s: dict,
              cores: int) -> list[dict]:
    """Committees trained on the first frames of reference-MD runs (a shorter
    trajectory for fewer frames) at the sampling temperatures, one per size."""
    from alflow.io import write_frames
    from alflow.md import md_plan

    root = BENCH / system / f"refmd_seed{seed}"
    pool_cfg = merge(cfg, {"iterations": 0, "seed": 1000 + seed,
                           "test_set": {"n_structures": POOL[system]}})
    pool = reference_md_set(root / "pool", pool_cfg, cores)
    plan = md_plan(POOL[system], cfg["sampling"]["temperatures"], 1)
    runs, start = [], 0
    for run in plan:  # the pool holds the frames of each run in order
        runs.append(pool[start:start + run.n_frames])
        start += run.n_frames
    md = cfg["test_set"]["md"]
    rows = []
    for n in sizes:
        per = [n // len(runs) + (1 if k < n % len(runs) else 0) for k in range(len(runs))]
        if any(p > len(r) for p, r in zip(per, runs)):
            continue  # the pool is too short for this size
        frames = [f for r, p in zip(runs, per) for f in r[:p]]
        steps = sum(md["equilibration_steps"] + p * md["interval_steps"] for p in per if p)
        wd = root / f"n{n:03d}"
        data = wd / "train.xyz"
        if not data.exists():
            wd.mkdir(parents=True, exist_ok=True)
            write_frames(data, frames)
        snakemake(wd, merge(cfg, {"iterations": 0, "seed": seed, "bootstrap": {
            "dataset": str(data)}, "test_set": {"path": tests["in"]}, "reference": {
            "e0s": e0s}, "validation": {"enabled": n == max(sizes)}}), cores)
        rows.append({"wd": wd, "iteration": 0, "n_labels": n, "cost": steps})
    return rows


def wide_pool(system: str, cfg: dict) -> dict:
    """The overrides of the wide arms: every structure as given and strained
    by ±3 %, and the sampling temperatures with 1.3x the hottest added."""
    from alflow.io import write_frames
    from alflow.structures import load_structures

    path = BENCH / system / "wide_structures.xyz"
    if not path.exists():
        write_frames(path, load_structures(cfg["structures"]) + strained(cfg["structures"]))
    temps = cfg["sampling"]["temperatures"]
    return {"structures": str(path),
            "sampling": {"temperatures": temps + [round(1.3 * max(temps))]}}


# The stand-in foundation model (Cu/EMT): the 7 fcc metals of ASE's EMT and
# their binary alloys near equilibrium -- rattled and strained cells, no MD --
# like the relaxations a materials database holds. It knows cold Cu; the
# campaign samples 600 and 1200 K.
FOUNDATION_EPOCHS = 40
FOUNDATION_BATCHES = {"batch_size": 16, "valid_batch_size": 32}
FOUNDATION_METALS = ["Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au"]


def foundation_frames(reference, workdir: Path, n_pure: int = 24, n_alloys: int = 96,
                      seed: int = 0) -> list:
    """The pre-training cells, labelled by ``reference`` (the campaign's)."""
    from ase.build import bulk
    from ase.data import atomic_numbers, reference_states

    rng = np.random.default_rng(seed)
    lattice = {el: reference_states[atomic_numbers[el]]["a"] for el in FOUNDATION_METALS}
    cells = [[el] for el in FOUNDATION_METALS for _ in range(n_pure)]
    cells += [list(rng.choice(FOUNDATION_METALS, 2, replace=False)) for _ in range(n_alloys)]
    frames = []
    for els in cells:
        atoms = bulk(els[0], "fcc", a=1.0, cubic=True).repeat((2, 2, 1))
        if len(els) > 1:  # a random binary alloy, Vegard's lattice constant
            pick = rng.random(len(atoms)) < rng.uniform(0.2, 0.8)
            atoms.symbols[pick] = els[1]
        a = np.mean([lattice[el] for el in atoms.get_chemical_symbols()])
        strain = np.eye(3) * (1 + rng.uniform(-0.04, 0.04)) + rng.uniform(-0.01, 0.01, (3, 3))
        atoms.set_cell(atoms.cell @ (a * strain), scale_atoms=True)
        atoms.positions += rng.normal(0, rng.uniform(0.02, 0.08), atoms.positions.shape)
        frames.append(reference.label(atoms, workdir))
    return frames


def foundation_arm(system: str, cfg: dict) -> dict:
    """The overrides of the foundation arms: committee.foundation_model, a MACE
    of the campaign's architecture pretrained on foundation_frames (made once)."""
    from alflow.io import write_frames
    from alflow.reference import make_reference
    from alflow.training import train_member

    root = BENCH / system / "foundation"
    model = root / "foundation.model"
    # what the stand-in is made from: a model made from other settings is refused
    settings = {"mace": {**cfg["committee"]["mace"], **FOUNDATION_BATCHES},
                "dtype": cfg["committee"]["dtype"], "epochs": FOUNDATION_EPOCHS,
                "metals": FOUNDATION_METALS, "reference": cfg["reference"]["ase"]}
    stamp = root / "settings.json"
    if model.exists() and stamp.exists() and json.loads(stamp.read_text()) != settings:
        old = json.loads(stamp.read_text())
        changed = sorted(k for k in settings if old.get(k) != settings[k])
        raise SystemExit(f"{model} was made with other settings ({', '.join(changed)} changed): "
                         f"delete {root} to make the stand-in again, and the foundation arms' "
                         "campaigns with it")
    if not model.exists():
        root.mkdir(parents=True, exist_ok=True)
        reference = make_reference(cfg["reference"])
        frames = foundation_frames(reference, root / "label")
        rng = np.random.default_rng(1)
        valid = set(rng.choice(len(frames), len(frames) // 10, replace=False).tolist())
        write_frames(root / "train.xyz", [f for i, f in enumerate(frames) if i not in valid])
        write_frames(root / "valid.xyz", [f for i, f in enumerate(frames) if i in valid])
        e0s = {el: reference.isolated_atom_energy(el, root / "label") for el in FOUNDATION_METALS}
        t0 = time.monotonic()
        train_member(output=str(model), work_dir=str(root / "train"), log_file=str(root / "train.log"),
                     threads=2, name="foundation", train_file=str(root / "train.xyz"),
                     valid_file=str(root / "valid.xyz"), e0s=e0s, seed=0, device="cpu",
                     dtype=cfg["committee"]["dtype"], epochs=FOUNDATION_EPOCHS,
                     hyper={**cfg["committee"]["mace"], **FOUNDATION_BATCHES})
        print(f"  foundation model: {len(frames)} frames, {time.monotonic() - t0:.0f} s", flush=True)
    if not stamp.exists():  # also for a stand-in made before the stamp (2026-11-30, these settings)
        stamp.write_text(json.dumps(settings, indent=1, sort_keys=True))
    return {"committee": {"foundation_model": str(model)}}


def campaign_arm(system: str, arm: str, cfg: dict, seed: int, tests: dict, e0s: dict,
                 cores: int) -> list[dict]:
    wd = BENCH / system / f"{arm}_seed{seed}"
    over = ARMS[arm]
    if arm.startswith("wide"):
        over = merge(over, wide_pool(system, cfg))
    if arm.startswith("foundation"):
        over = merge(over, foundation_arm(system, cfg))
    run_cfg = merge(merge(cfg, over), {"seed": seed, "test_set": {"path": tests["in"]},
                                       "reference": {"e0s": e0s}})
    wall = snakemake(wd, run_cfg, cores)
    table = pd.read_csv(wd / "results" / "campaign.csv")
    print(f"  {system} {arm} seed {seed}: {wall:.0f} s, final test force RMSE "
          f"{table['force_rmse_meV_per_A'].iloc[-1]:.1f} meV/Å", flush=True)
    # labels paid: those in the dataset and those left out of it (dataset.max_force)
    paid = table["n_labels"] + table.get("n_label_excluded", 0 * table["n_labels"]).cumsum()
    return [{"wd": wd, "iteration": int(r["iteration"]), "n_labels": int(n), "cost": int(n)}
            for (_, r), n in zip(table.iterrows(), paid)]


def true_error_pool(wd: Path, iteration: int) -> list:
    """The sane frames the walkers of a campaign sampled in one iteration,
    labelled by the campaign's own reference, each with the true max atomic
    force error (eV/Å) of the committee that sampled it (``info['true_error']``).
    Meant for references that cost nothing (Cu/EMT)."""
    import tempfile

    from alflow import FORCES_KEY
    from alflow.io import read_many
    from alflow.reference import make_reference
    from alflow.selection import deviation, is_sane

    cfg = yaml.safe_load((wd / "config.yaml").read_text())
    ref = make_reference(cfg["reference"], mpi="")
    min_distance = cfg["selection"].get("min_distance_fraction", 0.6)
    it_dir = wd / "results" / f"iter_{iteration:03d}"
    out = []
    with tempfile.TemporaryDirectory() as work:
        for atoms in read_many(sorted((it_dir / "sample").glob("pack_*.xyz"))):
            if not (np.isfinite(deviation(atoms)) and is_sane(atoms, min_distance)):
                continue
            labelled = ref.label(atoms, work)
            labelled.info["true_error"] = float(np.linalg.norm(
                atoms.arrays["committee_forces"] - labelled.arrays[FORCES_KEY], axis=1).max())
            labelled.info["origin"] = f"{it_dir.name}:{atoms.info['walker']}:{atoms.info['step']}"
            out.append(labelled)
    return out


def ranking(pool: list, k: int) -> dict:
    """How well the committee deviation ranks the true error over a pool
    (:func:`true_error_pool`): Spearman rho, the share of the k largest true errors
    among the k largest deviations, the median true error / deviation."""
    from scipy.stats import spearmanr

    dev = np.array([a.info["committee_force_dev"] for a in pool])
    err = np.array([a.info["true_error"] for a in pool])
    top = set(np.argsort(-err)[:k])
    return {"frames": len(pool), "k": k, "spearman": float(spearmanr(dev, err).statistic),
            "top_k_recall": len(top & set(np.argsort(-dev)[:k])) / k,
            "scale_median": float(np.median(err / dev))}


def content_key(paths: list[Path]) -> str:
    """A short digest of the files' content: a cache entry made for other
    models or other frames (a campaign rerun since) is not used."""
    from alflow.training import file_sha256

    return hashlib.sha256("".join(file_sha256(p) for p in paths).encode()).hexdigest()[:16]


def pool_ranking(wd: Path, iteration: int, cache: dict) -> dict:
    """:func:`ranking` of what one iteration's walkers sampled (Cu/EMT only:
    true errors cost nothing there), cached like :func:`scores`."""
    packs = sorted((wd / "results" / f"iter_{iteration:03d}" / "sample").glob("pack_*.xyz"))
    key = f"{wd.parent.name}/{wd.name}/{iteration}/pool/{content_key(packs)}"
    if key not in cache:
        k = yaml.safe_load((wd / "config.yaml").read_text())["selection"]["max_selected"]
        cache[key] = {f"pool_{n}": v for n, v in ranking(true_error_pool(wd, iteration),
                                                          k).items()}
    return cache[key]


def max_force_errors(predictions: pd.DataFrame) -> np.ndarray:
    """Per frame: the max over atoms of |F_pred - F_ref| (eV/Å), from the
    long table of :func:`alflow.metrics.evaluate`."""
    f = predictions[predictions["quantity"] == "force"].copy()
    f["sq"] = (f["predicted"] - f["reference"]) ** 2
    per_atom = np.sqrt(f.groupby(["structure", "atom"])["sq"].sum())
    return per_atom.groupby(level="structure").max().to_numpy()


def committee_scores(models: list[str], tests: dict) -> dict:
    """Force RMSE and p95 max atomic force error (meV/Å) of a committee (its
    model files) on each test set, and its energy RMSE, offset and
    offset-free RMSE (meV/atom: ``e_rmse_in``, ``e_offset_in``, ``e_free_in``)."""
    from alflow.io import read_frames
    from alflow.metrics import evaluate, load_committee

    calc = load_committee(sorted(str(m) for m in models), "cpu", "float64")
    out = {}
    for name, path in tests.items():
        result, pred = evaluate(calc, read_frames(path), return_predictions=True)
        out[f"rmse_{name}"] = result["force_rmse_meV_per_A"]
        out[f"p95_{name}"] = 1000 * float(np.percentile(max_force_errors(pred), 95))
        out[f"e_rmse_{name}"] = result["energy_rmse_meV_per_atom"]
        out[f"e_offset_{name}"] = result["energy_offset_meV_per_atom"]
        out[f"e_free_{name}"] = result["energy_offset_free_rmse_meV_per_atom"]
    return out


def committee_models(wd: Path, iteration: int) -> list[Path]:
    """The model files of one iteration's committee of a campaign, by member."""
    return sorted((wd / "results" / f"iter_{iteration:03d}" / "models").glob("member_*.model"),
                  key=lambda p: int(p.stem.split("_")[1]))


def scores(wd: Path, iteration: int, tests: dict, cache: dict, members: int = 0) -> dict:
    """:func:`committee_scores` of one iteration's committee of a campaign
    (``members`` > 0: of its first members only), cached in the campaign's
    directory under the models' content."""
    models = committee_models(wd, iteration)
    models = models[:members] if members else models
    key = f"{wd.parent.name}/{wd.name}/{iteration}/{content_key(models)}"
    if key not in cache:
        cache[key] = committee_scores(models, tests)
    return cache[key]


def labels_to_reach(x, y, target: float) -> float:
    """Cost at which a learning curve first reaches ``target`` (linear
    interpolation between points); NaN when it never does."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if y[0] <= target:
        return float(x[0])
    for k in range(1, len(x)):
        if y[k] <= target:
            return float(x[k - 1] + (x[k] - x[k - 1]) * (y[k - 1] - target) / (y[k - 1] - y[k]))
    return math.nan


def ratio_of(cost_a, y_a, cost_b, y_b, versus_random: bool) -> tuple[float, float]:
    """Cost for curve a to reach R over cost for curve b to reach R. R is the
    final value of b (random), or, against refmd, the worse of the two final
    values so that both curves reach it."""
    target = y_b[-1] if versus_random else max(y_a[-1], y_b[-1])
    return labels_to_reach(cost_a, y_a, target) / labels_to_reach(cost_b, y_b, target), target


def interval(df: pd.DataFrame, arm: str, other: str, seeds: list[int], metric: str,
             n_boot: int = 1000) -> dict:
    """:func:`ratio_of` the seed-averaged curves of ``arm`` and ``other``, with
    a 95 % interval from resampling the seeds (paired: one resample for both)."""
    tables = []
    for a in (arm, other):
        sub = df[(df["arm"] == a) & df["seed"].isin(seeds)]
        tables += [sub.pivot_table(index="seed", columns="n_labels", values=v)
                   .reindex(seeds).to_numpy(float) for v in ("cost", metric)]

    def at(rows) -> tuple[float, float]:
        means = [np.nanmean(t[rows], axis=0) for t in tables]
        return ratio_of(*means, versus_random=other == "random")

    ratio, target = at(np.arange(len(seeds)))
    rng = np.random.default_rng(0)
    boot = np.asarray([at(rng.integers(0, len(seeds), len(seeds)))[0]
                       for _ in range(n_boot)], float)
    reached = np.isfinite(boot)
    lo, hi = (np.percentile(boot[reached], [2.5, 97.5]) if reached.any() else (math.nan,) * 2)
    return {"ratio": ratio, "lower": lo, "upper": hi, "R": target,
            "boot_share_reached": float(reached.mean())}


def judge(test: dict, stop: int | None, target: float) -> dict:
    """A stop (an iteration, or None) against the test curve ({iteration:
    test force RMSE}, in the target's unit): the first iteration at or below
    the target; the test RMSE at the stop within 1.25x the target; not late
    (stopped by the iteration after that first one; None where that iteration
    lies beyond the campaign, so no stop was due)."""
    first = next((i for i, v in sorted(test.items()) if v <= target), None)
    return {"first_iteration_test_below": first,
            "within_1.25x": None if stop is None else bool(test[stop] <= 1.25 * target),
            "not_late": (None if first is None or first + 1 > max(test)
                         else stop is not None and stop <= first + 1)}


def stops(df: pd.DataFrame, system: str) -> pd.DataFrame:
    """The stop rule replayed on the real audit frames of each campaign that
    selects by its committee (active and its variants), pooled over 1 and 2
    iterations (``convergence.audit_window``): the campaigns run without a
    target, so their iterations do not depend on it."""
    from alflow.calibration import pooled_audit, stop_decision
    from alflow.io import read_json

    rows = []
    act = df[df["arm"].isin([a for a in ARMS
                             if ARMS[a] is not None and not a.endswith("random")])]
    for (arm, seed), runs in act.groupby(["arm", "seed"]):
        runs = runs.sort_values("iteration")
        wd = Path(runs["wd"].iloc[0])
        conv = yaml.safe_load((wd / "config.yaml").read_text())["convergence"]
        tables, survival = {}, {}
        for it in runs["iteration"]:
            it_dir = wd / "results" / f"iter_{it:03d}"
            if it > 0 and (it_dir / "calibration.csv").exists():
                tables[it] = pd.read_csv(it_dir / "calibration.csv")
                survival[it] = read_json(it_dir / "calibration.json").get("walker_survival")
        test = dict(zip(runs["iteration"], runs["rmse_in"]))
        for window in (1, 2):
            audits = {it: pooled_audit([tables[k] for k in tables if it - window < k <= it],
                                       seed=seed * 31 + it, level=conv.get("confidence", 0.95))
                      for it in tables}
            for target in TARGETS[system]:
                decisions = {it: stop_decision(audits[it], survival[it], target,
                                               conv.get("min_walker_survival", 0.5))
                             for it in sorted(audits)}
                stop = next((it for it, d in decisions.items() if d["converged"]), None)
                verdict = judge(test, stop, target)
                first = verdict["first_iteration_test_below"]
                on_time = None if first is None else decisions.get(first + 1)
                rows.append({"system": system, "arm": arm, "seed": seed, "audit_window": window,
                             "target": target, "stop_iteration": stop,
                             "test_rmse_at_stop": test.get(stop) if stop is not None else None,
                             **verdict,
                             # what held the rule back when a stop was due
                             "held_by": (on_time["reason"] if on_time and not on_time["converged"]
                                         and verdict["not_late"] is False else None)})
    return pd.DataFrame(rows)


def run_system(system: str, arms: list[str], seeds: list[int], cores: int) -> pd.DataFrame:
    cfg = base_config(system)
    tests, e0s = test_sets(system, cfg, cores)
    cache_path = BENCH / system / "scores.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    rows = []
    for seed in seeds:
        for arm in arms:
            if arm == "refmd":
                continue
            found = campaign_arm(system, arm, cfg, seed, tests, e0s, cores)
            rows += [{**r, "arm": arm, "seed": seed} for r in found]
            if arm.startswith("size4"):
                # what the bigger committee's data is worth to a 2-member one:
                # its mean is more accurate by itself, whatever it selected
                rows += [{**r, "arm": f"{arm}_2members", "seed": seed, "members": 2}
                         for r in found]
            if arm == "active" and "refmd" in arms:
                sizes = sorted({r["n_labels"] for r in found})
                rows += [{**r, "arm": "refmd", "seed": seed}
                         for r in refmd_arm(system, cfg, seed, sizes, tests, e0s, cores)]
            for r in rows:
                r.update(scores(Path(r["wd"]), r["iteration"], tests, cache,
                                members=int(r.get("members") or 0)))
                if system == "emt" and r["arm"] != "refmd" and r["iteration"] > 0:
                    r.update(pool_ranking(Path(r["wd"]), r["iteration"], cache))
            cache_path.write_text(json.dumps(cache))
            # what has finished so far, for --report-only while the rest runs
            pd.DataFrame(rows).assign(system=system).to_csv(BENCH / f"{system}_partial.csv",
                                                            index=False)
    df = pd.DataFrame(rows)
    df["system"] = system
    df["wd"] = df["wd"].astype(str)
    return df


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    out = []
    for system, sdf in df.groupby("system"):
        for arm in sorted(sdf["arm"].unique()):
            if arm in ("random", "refmd"):
                continue
            arm_seeds = sorted(sdf[sdf["arm"] == arm]["seed"].unique())
            for other in ("random", "refmd", *VERSUS.get(arm, [])):
                other_seeds = [s for s in arm_seeds if s in set(sdf[sdf["arm"] == other]["seed"])]
                if not other_seeds:
                    continue
                for metric in ("rmse_in", "rmse_ood", "p95_in", "p95_ood"):
                    out.append({"system": system, "arm": arm, "versus": other, "metric": metric,
                                "n_seeds": len(other_seeds),
                                **interval(sdf, arm, other, other_seeds, metric)})
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--systems", nargs="+", default=["emt", "water"], choices=list(SYSTEMS))
    ap.add_argument("--arms", nargs="+", default=["active", "random", "refmd"],
                    choices=list(ARMS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--fresh", action="store_true", help="delete earlier campaigns first")
    args = ap.parse_args()
    if any(a.startswith("foundation") for a in args.arms) and args.systems != ["emt"]:
        ap.error("the foundation arms exist for --systems emt only (the stand-in is pretrained "
                 "on EMT metals)")
    BENCH.mkdir(parents=True, exist_ok=True)
    curves_path = BENCH / "curves.csv"
    frames = []
    for system in args.systems:
        if args.fresh:
            shutil.rmtree(BENCH / system, ignore_errors=True)
        frames.append(run_system(system, args.arms, args.seeds, args.cores))
    df = pd.concat(frames, ignore_index=True)
    if curves_path.exists():  # keep what other invocations measured
        old = pd.read_csv(curves_path)
        key = ["system", "arm", "seed", "iteration", "n_labels"]
        df = pd.concat([old, df]).drop_duplicates(subset=key, keep="last")
    df.to_csv(curves_path, index=False)
    report(df)


def walker_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per system, active arm and iteration >= 1, the mean over seeds of what
    each campaign's table says about its walkers and labels."""
    rows = []
    for (system, arm, seed), wd in df.dropna(subset=["wd"]).groupby(
            ["system", "arm", "seed"])["wd"].first().items():
        table = Path(wd) / "results" / "campaign.csv"
        if arm == "refmd" or arm.endswith("_2members") or not table.exists():
            continue
        t = pd.read_csv(table)
        t = t[t["iteration"] >= 1]
        rows += [{"system": system, "arm": arm, "iteration": int(r["iteration"]),
                  "stopped": r["walkers_stopped"] / r["n_walkers"],
                  "restarts": r["n_walkers_restarted"] / r["n_walkers"],
                  "label_error": r["calib_error"], "audit": r["audit_force_rmse"]}
                 for _, r in t.iterrows()]
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).groupby(["system", "arm", "iteration"]).mean()


def report(df: pd.DataFrame) -> None:
    pd.set_option("display.width", 200)
    fmt = lambda v: f"{v:.3g}"  # noqa: E731
    print("\nMean over seeds per arm and label count (meV/Å; cost = reference calls):")
    print(df.groupby(["system", "arm", "n_labels"])[
        ["cost", "rmse_in", "p95_in", "rmse_ood", "p95_ood"]].agg(["mean"]).round(1)
        .droplevel(1, axis=1).join(df.groupby(["system", "arm", "n_labels"])["seed"].nunique()
                                   .rename("seeds")).to_string())
    summary = summarize(df)
    summary.to_csv(BENCH / "summary.csv", index=False)
    print("\nCost to reach R, arm / versus (95 % interval over seeds, paired resampling):")
    print(summary.to_string(index=False, float_format=fmt))
    if "pool_spearman" in df:
        print("\nThe committee deviation as a ranking of the true max atomic force error over "
              "all sane frames the walkers sampled (Cu/EMT; mean over seeds):")
        ranked = df.dropna(subset=["pool_spearman"])
        print(ranked.groupby(["system", "arm", "iteration"])[
            ["pool_spearman", "pool_top_k_recall", "pool_scale_median"]].mean().round(2)
            .join(ranked.groupby(["system", "arm", "iteration"])["seed"].nunique()
                  .rename("seeds")).to_string())
    walkers = walker_table(df)
    if not walkers.empty:
        print("\nWhat the walkers did and what their labels held, per iteration (mean over seeds): "
              "share of walkers stopped early, restarts per walker, true max atomic force error "
              "of the labelled frames (eV/Å), audit force RMSE (meV/Å):")
        print(walkers.to_string(float_format=fmt))
    last = df.sort_values("n_labels").groupby(["system", "arm", "seed"]).tail(1)
    valid = pd.DataFrame([{"system": r["system"], "arm": r["arm"], "seed": r["seed"],
                           **stability(Path(r["wd"]))} for _, r in last.iterrows()])
    if "stable" in valid:
        valid.to_csv(BENCH / "stability.csv", index=False)
        print("\nProduction MD with each arm's final committee (share of runs that completed):")
        print(valid.drop(columns="seed").groupby(["system", "arm"]).mean(numeric_only=True)
              .round(2).to_string())
    stop = pd.concat([stops(df[df["system"] == s], s) for s in df["system"].unique()])
    stop.to_csv(BENCH / "stops.csv", index=False)
    print("\nThe stop rule, per arm, seed and target (meV/Å):")
    print(stop.to_string(index=False, float_format=fmt))
    if not stop.empty:
        print("\nThe stop rule, per arm, audit window and target: stops, honest stops (test RMSE "
              "at the stop <= 1.25x target, not late), late (no stop by the iteration after the "
              "test RMSE first reached the target, where the campaign had that iteration), "
              "seeds whose test RMSE reached the target:")
        print(stop.assign(stopped=stop["stop_iteration"].notna(),
                          honest=stop["within_1.25x"].eq(True) & stop["not_late"].ne(False),
                          late=stop["not_late"].eq(False),
                          reached=stop["first_iteration_test_below"].notna())
              .groupby(["system", "arm", "audit_window", "target"])[
                  ["stopped", "honest", "late", "reached"]].sum().to_string())


if __name__ == "__main__":
    if "--report-only" in sys.argv:  # curves.csv, or what a running benchmark has finished
        done = BENCH / "curves.csv"
        report(pd.read_csv(done) if done.exists() else
               pd.concat([pd.read_csv(p) for p in sorted(BENCH.glob("*_partial.csv"))]))
    else:
        main()
