"""Quantities derived from the (schema-validated) config, and the checks that
must pass before any job starts. Every error names the config key or file."""
from __future__ import annotations

import functools
import importlib
import json
import math
import os
from pathlib import Path

import humanfriendly
import yaml

from .structures import StructureError, labelled_frames, load_structures
from .training import RESERVED


class ConfigError(ValueError):
    """A config value that cannot work; the message starts with the key."""


#: The config schema: defaults, types, and which keys are science.
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"
#: ``x-rerun`` values of keys that never rerun finished work.
NOT_SCIENCE = ("execution", "structure")


@functools.lru_cache(maxsize=4)
def load_schema(path: str | os.PathLike = SCHEMA_PATH) -> dict:
    """The schema, read once per process (callers must not change it)."""
    with open(path) as fh:
        return yaml.safe_load(fh)


def science(config: dict, *keys: str, schema: dict | None = None) -> dict:
    """The part of ``config[keys[0]][keys[1]]...`` that changes results.

    Keys the schema marks ``x-rerun: execution`` (where and how fast a job
    runs) or ``x-rerun: structure`` (how work is cut into jobs and files) are
    dropped, recursively, as are the free-form keys an object lists under
    ``x-execution-keys`` (e.g. mace-torch's ``valid_batch_size``), and keys
    marked ``x-omit-at-default`` while at their default. What is
    left goes into a rule's ``params``: changing it reruns that rule, and
    changing anything else never does.
    """
    node = schema or load_schema()
    value = config
    for key in keys:
        value = value[key]
        node = node.get("properties", {}).get(key, {})
    return _science(value, node)


def _science(value, node: dict):
    if not isinstance(value, dict):
        return value
    props = node.get("properties", {})
    skip = set(node.get("x-execution-keys", []))
    # sorted: Snakemake compares params by their text, and key order is no science
    return {k: _science(v, props.get(k, {})) for k, v in sorted(value.items())
            if k not in skip and props.get(k, {}).get("x-rerun") not in NOT_SCIENCE
            and not _omitted(v, props.get(k, {}))}


def _omitted(value, node: dict) -> bool:
    """A key marked ``x-omit-at-default`` at its default: it was added after
    campaigns were run and its default does what the workflow did before, so
    it stays out of params and those campaigns plan nothing new."""
    return bool(node.get("x-omit-at-default")) and value == node.get("default")


def level_of_theory(config: dict) -> dict:
    """What decides a reference label: the reference's science without the
    E0 mode, and without the CP2K template's path (rules take the template as
    an input file, so its content counts and its location does not)."""
    ref = science(config, "reference")
    ref.pop("e0s", None)
    ref.get("cp2k", {}).pop("template", None)
    return ref


#: ``committee.stress_weight`` when it is null and walkers run NPT: stress is in
#: eV/Å^3, so its squared errors are ~1e4 smaller than the forces' (eV/Å).
NPT_STRESS_WEIGHT = 1000.0


def stress_weight(config: dict) -> float:
    """Weight of stress in the training loss; 0: stress is not trained."""
    weight = config["committee"]["stress_weight"]
    if weight is None:
        return NPT_STRESS_WEIGHT if config["sampling"]["pressures"] else 0.0
    return float(weight)


def template_files(config: dict) -> list[str]:
    """The CP2K template as a rule input ([] for ASE references)."""
    ref = config["reference"]
    return [ref["cp2k"]["template"]] if ref["kind"] == "cp2k" else []


# Fallback resources per rule; config['resources'][rule] and then a
# profile's set-resources override them.
DEFAULT_RESOURCES = {
    "train": {"threads": 1, "gpu": 0, "mem_mb": 4000, "runtime": 60},
    "sample": {"threads": 1, "gpu": 0, "mem_mb": 2000, "runtime": 30},
    "label": {"tasks": 1, "cpus_per_task": 1, "concurrent": 1, "mpi": "mpirun", "mem_mb": 2000,
              "runtime": 30},
    "evaluate": {"threads": 1, "gpu": 0, "mem_mb": 2000, "runtime": 15},
}


#: what a value read by YAML must be to count as the schema's type
SCALARS = {"boolean": lambda v: isinstance(v, bool),
           "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
           "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
           "null": lambda v: v is None}


def coerce_cli_strings(config: dict, schema: dict) -> dict:
    """Turn strings back into the booleans and numbers the schema asks for.

    Snakemake reads a nested ``--config`` value (``"committee={train_in_one_job:
    true}"``, also in a profile's ``config:`` list) with YAML's BaseLoader, so
    every scalar inside arrives as a string. Only strings under keys whose
    schema type is boolean, integer, number or null, and that YAML reads as
    one, are changed, to exactly what the same text in a config file gives
    (``300`` stays the integer 300 under a number key, so a value repeated on
    the command line never changes a rule's params); anything else is left
    for the schema validation to report.
    """
    defs = schema.get("$defs", {})

    def walk(value, node):
        if "$ref" in node:
            node = {**defs[node["$ref"].rsplit("/", 1)[-1]], **node}
        if isinstance(value, dict):
            props = node.get("properties", {})
            return {k: walk(v, props.get(k, {})) for k, v in value.items()}
        if isinstance(value, list) and isinstance(node.get("items"), dict):
            return [walk(v, node["items"]) for v in value]
        if isinstance(value, str):
            types = node.get("type", [])
            try:
                read = yaml.safe_load(value)
            except yaml.YAMLError:
                return value
            for kind in [types] if isinstance(types, str) else types:
                if kind in SCALARS and SCALARS[kind](read):
                    return read
        return value

    return walk(config, schema)


def resources(config: dict, rule: str) -> dict:
    return {**DEFAULT_RESOURCES[rule], **config.get("resources", {}).get(rule, {})}


def seconds(value: int | float | str) -> float:
    """A duration in seconds from a number of minutes or a string like '30s', '20m', '1h'."""
    if isinstance(value, (int, float)):
        return 60.0 * value
    text = str(value).strip()
    return 60.0 * float(text) if text.replace(".", "", 1).isdigit() else float(
        humanfriendly.parse_timespan(text))


def minutes(value: int | float | str) -> int:
    """A runtime in whole minutes (at least 1), read like :func:`seconds`: '90m', '2h', 30."""
    return max(1, math.ceil(seconds(value) / 60))


def n_chunks(n_structures: int, chunk_size: int) -> int:
    return max(1, math.ceil(n_structures / chunk_size))


def stage_chunks(config: dict, stage: str) -> int:
    """Number of label chunks of a stage ('test', 'iter_000', 'iter_001', ...)."""
    size = config["selection"]["chunk_size"]
    if stage == "test":
        return n_chunks(config["test_set"]["n_structures"], size)
    if stage == "iter_000":
        return n_chunks(config["bootstrap"]["n_structures"], size)
    return n_chunks(config["selection"]["max_selected"], size)


def probe_settings(config: dict) -> dict | None:
    """The production probe before a target stop (``convergence.probe_steps``):
    MD ``steps`` and runs (``seeds``) per sampled condition, and what decides
    a run's failure (the frames kept, ``save_every``, are checked for atoms
    closer than ``min_distance_fraction``); None when there is no target or
    the probe is off (0)."""
    conv = config["convergence"]
    steps = conv.get("probe_steps")
    if conv.get("target_force_rmse") is None or steps == 0:
        return None
    return {"steps": int(steps or 3 * config["sampling"]["steps"]),
            "seeds": int(config["validation"]["seeds"]),
            "save_every": int(config["validation"]["save_every"]),
            "min_distance_fraction": float(config["selection"]["min_distance_fraction"])}


def n_walkers(config: dict) -> int:
    s = config["sampling"]
    return len(s["temperatures"]) * max(1, len(s["pressures"] or [])) * s["walkers_per_condition"]


def n_packs(config: dict) -> int:
    return min(config["sampling"]["packs"], n_walkers(config))


def elements(config: dict, cache: str | os.PathLike | None = None,
             compute: bool = True) -> list[str]:
    """Chemical symbols of the initial structures (and of user datasets).

    With ``cache`` (a JSON file) the answer is stored there keyed by the
    files' paths, sizes and modification times: the main Snakemake process
    reads the files (``compute``), its job processes (``compute=False``) read
    the cache and read the files only when it does not match."""
    paths = [p for p in (config["structures"], config["bootstrap"]["dataset"],
                         config["test_set"]["path"]) if p]
    key = [[os.path.abspath(p), *_stat(p)] for p in paths]
    if cache and not compute:
        try:
            stored = json.loads(Path(cache).read_text())
            if stored["key"] == key:
                return stored["elements"]
        except (OSError, ValueError, KeyError):
            pass
    found: set[str] = set()
    for path in paths:
        for atoms in load_structures(path):
            found.update(atoms.get_chemical_symbols())
    if cache:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(f"{cache}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "elements": sorted(found)}))
        os.replace(tmp, cache)
    return sorted(found)


def _stat(path: str) -> list[int]:
    try:
        st = os.stat(path)
        return [st.st_size, st.st_mtime_ns]
    except OSError:
        return [-1, -1]


def check(config: dict) -> None:
    """Everything that can be checked before a job runs; raises ConfigError."""
    _wrap("structures", load_structures, config["structures"])
    for key, path in (("bootstrap.dataset", config["bootstrap"]["dataset"]),
                      ("test_set.path", config["test_set"]["path"])):
        if path:
            _wrap(key, labelled_frames, path)
    sel = config["selection"]
    if sel["trust_lo"] >= sel["trust_hi"]:
        raise ConfigError(f"selection.trust_lo ({sel['trust_lo']}) must be below "
                          f"selection.trust_hi ({sel['trust_hi']})")
    clash = RESERVED & set(config["committee"]["mace"])
    if clash:
        raise ConfigError(f"committee.mace: {sorted(clash)} are set by the workflow; "
                          "use the dedicated keys (committee.epochs, committee.device, ...)")
    _check_reference(config)
    _check_foundation(config)
    _check_stage_two(config["committee"])
    for rule in DEFAULT_RESOURCES:
        runtime = resources(config, rule)["runtime"]
        try:
            minutes(runtime)
        except Exception as exc:
            raise ConfigError(f"resources.{rule}.runtime: cannot read {runtime!r} as a duration") from exc
    label = resources(config, "label")
    ranks_per_structure(label["tasks"], label["concurrent"], "resources.label")


def ranks_per_structure(tasks: int, concurrent: int, where: str = "resources of rule label") -> int:
    """MPI ranks of each of the ``concurrent`` CP2K runs of a label job that
    has ``tasks`` ranks; ConfigError unless they divide evenly."""
    tasks, concurrent = int(tasks), int(concurrent)
    if concurrent < 1 or tasks % concurrent:
        raise ConfigError(f"{where}: tasks ({tasks}) must be a multiple of concurrent "
                          f"({concurrent}): a label job runs `concurrent` CP2K singlepoints at "
                          f"once, each on tasks / concurrent MPI ranks")
    return tasks // concurrent


def stage_two_start(mace: dict, epochs: int) -> int | None:
    """The epoch at which mace-torch's stage two starts in a training of
    ``epochs`` epochs (its own rule: ``start_stage_two``, else 3/4 of the
    epochs), or None when stage two is off or would not start."""
    on = mace.get("stage_two", mace.get("swa", False))
    start = mace.get("start_stage_two", mace.get("start_swa"))
    if not on and start is None:
        return None
    start = max(1, epochs // 4 * 3) if start is None else int(start)
    return start if start < epochs else None


def _check_stage_two(com: dict) -> None:
    """mace-torch keeps the best of the epochs it validates (every
    ``eval_interval``-th): a stage two with no validated epoch is thrown away
    without a word, and the member is its stage-one model."""
    every = int(com["mace"].get("eval_interval", 1))
    for key in ("epochs", "finetune_epochs"):
        start = stage_two_start(com["mace"], com[key])
        if start is not None and not any(e % every == 0 for e in range(start, com[key])):
            raise ConfigError(
                f"committee.{key} = {com[key]}: stage two (committee.mace.stage_two) runs epochs "
                f"{start}-{com[key] - 1}, but mace-torch validates, and keeps checkpoints, only "
                f"every committee.mace.eval_interval = {every} epochs, none of them in stage "
                "two: set eval_interval to 1 (or more epochs)")


def _check_reference(config: dict) -> None:
    ref = config["reference"]
    e0s = ref["e0s"]
    if isinstance(e0s, dict):
        missing = set(elements(config)) - set(e0s)
        if missing:
            raise ConfigError(f"reference.e0s: no energy for {sorted(missing)}")
    if ref["time_limit"] is not None:
        try:
            seconds(ref["time_limit"])
        except Exception as exc:
            raise ConfigError(f"reference.time_limit: cannot read {ref['time_limit']!r} as a "
                              "duration") from exc
    if ref["kind"] == "cp2k":
        from .cp2k import check_elements, load_template

        template = ref["cp2k"].get("template")
        if not template:
            raise ConfigError(
                "reference.cp2k.template: required with reference.kind cp2k: the CP2K input "
                "that defines your level of theory (method, basis, SCF). Start from a copy of "
                "config/cp2k/water_pbe.inp (PBE/DZVP) or config/cp2k/water_xtb.inp (GFN1-xTB)")
        try:
            parsed = load_template(template)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"reference.cp2k.template: {exc}") from exc
        problems = check_elements(parsed, elements(config))
        if problems:
            raise ConfigError(f"reference.cp2k.template: {template} cannot label these "
                              f"structures: {'; '.join(problems)}")
    else:
        calc_path = ref["ase"]["calculator"]
        try:
            import_object(calc_path)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(f"reference.ase.calculator: cannot import {calc_path!r}: {exc}") from exc


def _check_foundation(config: dict) -> None:
    com, boot = config["committee"], config["bootstrap"]
    model = com["foundation_model"]
    if model is not None and not Path(model).is_file():
        raise ConfigError(
            f"committee.foundation_model: no such file {model!r}. The workflow never downloads "
            "models: download one first (see the README, 'Starting from a foundation model') "
            "and give its path")
    if boot["source"] == "foundation_md" and model is None and not boot["dataset"]:
        raise ConfigError("bootstrap.source: foundation_md needs committee.foundation_model")
    if model is not None and com["foundation_finetuning"] == "multihead" \
            and "pt_train_file" not in com["mace"]:
        raise ConfigError(
            "committee.foundation_finetuning: multihead replays the foundation model's "
            "pre-training data; give it as committee.mace.pt_train_file (a local extxyz; "
            "the workflow downloads nothing), or use naive")


def import_object(dotted: str):
    """'package.module.Name' -> the object."""
    module, _, name = dotted.rpartition(".")
    if not module:
        raise ValueError("expected a dotted path such as ase.calculators.emt.EMT")
    return getattr(importlib.import_module(module), name)


def _wrap(key: str, func, path: str):
    try:
        return func(path)
    except StructureError as exc:
        raise ConfigError(f"{key}: {exc}") from exc
