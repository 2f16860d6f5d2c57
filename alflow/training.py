"""Training one committee member through mace-torch's own CLI (mace_run_train)."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ase.data import atomic_numbers

from . import ENERGY_KEY, FORCES_KEY, STRESS_KEY

# CLI arguments the workflow sets itself; the user's ``committee.mace`` must not.
RESERVED = {
    "name", "train_file", "valid_file", "test_file", "work_dir", "model_dir",
    "E0s", "seed", "device", "default_dtype", "energy_key", "forces_key",
    "stress_key", "foundation_model", "max_num_epochs", "restart_latest", "stress_weight",
}


def member_seed(seed: int, member: int) -> int:
    """Each committee member's own seed, the same in every iteration."""
    return seed * 1000 + int(member)


def member_index(path: str | os.PathLike) -> int:
    """The member number of a model file ``.../member_{m}.model``."""
    found = re.search(r"member_(\d+)\.model$", str(path))
    if not found:
        raise ValueError(f"not a committee member's model file: {path}")
    return int(found.group(1))


def bootstrap_indices(n: int, seed: int, iteration: int) -> list[int]:
    """Bagging: the frames (indices into a training set of ``n``) one member
    trains on, ``n`` draws with replacement, fixed by the member's seed and the
    iteration (the same files after a rerun, so training is reused)."""
    import numpy as np

    rng = np.random.default_rng([int(seed), int(iteration)])
    return sorted(int(i) for i in rng.integers(0, n, size=n))


def _cli_value(value) -> str:
    return str(value) if not isinstance(value, bool) else ("True" if value else "False")


@functools.lru_cache(maxsize=None)
def is_switch(key: str) -> bool:
    """Whether mace_run_train's ``--key`` takes no value (``--stage_two``,
    ``--ema``: argparse's store_true), asked of mace-torch's own parser."""
    import contextlib
    import io

    from mace.tools import build_default_arg_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            _, rest = build_default_arg_parser().parse_known_args(["--name=x", f"--{key}"])
    except SystemExit:  # "expected one argument"
        return False
    return not rest


def _cli(key: str, value) -> list[str]:
    """One mace_run_train argument: a switch appears alone when true and not
    at all when false; every other option as ``--key=value``."""
    if isinstance(value, bool) and is_switch(key):
        return [f"--{key}"] if value else []
    return [f"--{key}={_cli_value(value)}"]


def e0s_argument(e0s: dict[str, float] | str) -> str:
    """mace-torch's --E0s: a {Z: energy} dict literal, or a keyword like 'average'."""
    if isinstance(e0s, str):
        return e0s
    return "{" + ", ".join(f"{atomic_numbers[s]}: {e!r}" for s, e in sorted(e0s.items())) + "}"


def mace_arguments(*, name: str, train_file: str, valid_file: str, work_dir: str,
                   e0s: dict[str, float] | str, seed: int, device: str, dtype: str,
                   epochs: int, hyper: dict, foundation: str | None = None,
                   multihead: bool = False, stress_weight: float = 0.0) -> list[str]:
    """The argument list for mace_run_train; ``foundation``: the model to
    fine-tune from (naively, or with ``multihead`` mace-torch's multihead
    fine-tuning); ``stress_weight`` > 0 trains stress too (mace-torch's
    ``stress`` loss, unless ``hyper`` names a loss of its own)."""
    clash = RESERVED & set(hyper)
    if clash:
        raise ValueError(f"committee.mace may not set {sorted(clash)}: the workflow sets them")
    args = {
        "name": name, "train_file": train_file, "valid_file": valid_file,
        "work_dir": work_dir, "E0s": e0s_argument(e0s), "seed": seed,
        "device": device, "default_dtype": dtype, "max_num_epochs": epochs,
        "energy_key": ENERGY_KEY, "forces_key": FORCES_KEY, "stress_key": STRESS_KEY,
        **hyper,
    }
    if stress_weight > 0:
        args.setdefault("loss", "stress")
        args["stress_weight"] = stress_weight
    if foundation:
        args["foundation_model"] = foundation
        args["multiheads_finetuning"] = multihead
    return [arg for k, v in args.items() for arg in _cli(k, v)]


def mace_executable() -> list[str]:
    """mace-torch's training entry point, from this interpreter's environment."""
    exe = Path(sys.executable).parent / "mace_run_train"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mace_run_train")
    if found is None:
        raise FileNotFoundError("mace_run_train not found: is mace-torch installed?")
    return [found]


def train_member(*, output: str, work_dir: str, log_file: str, threads: int,
                 env: dict[str, str] | None = None, **kwargs) -> None:
    """Train one member; the model is moved to ``output`` only when training succeeded.

    When ``work_dir`` holds checkpoints of an earlier, interrupted run with the
    same arguments and the same *content* of every file they name (training,
    validation and foundation files: :func:`training_key`) -- a job killed at
    its time limit, a crashed login node, a cascade that rewrote identical
    files -- training resumes from the latest checkpoint instead of starting
    again; when that run had finished (its model is there), its model is taken
    as it is. Changed data always trains afresh. With mace-torch's stage two
    (``--swa``) the member is the stage-two model.
    ``env``: extra environment of the training process (CUDA_VISIBLE_DEVICES).
    """
    work = Path(work_dir)
    args = mace_arguments(work_dir=str(work), **kwargs)
    stamp = work / "arguments.json"
    key = training_key(args)
    model = work / f"{kwargs['name']}.model"
    stage_two = work / f"{kwargs['name']}_stagetwo.model"  # mace-torch's, with --swa
    restart = (stamp.exists() and json.loads(stamp.read_text()) == key
               and any((work / "checkpoints").glob("*.pt")))
    if not restart:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        stamp.write_text(json.dumps(key))
    if restart and model.exists():
        with open(log_file, "a") as log:
            log.write("training with these arguments and the same data (content) already "
                      f"finished: reusing {model}\n")
    else:
        cmd = mace_executable() + args + (["--restart_latest"] if restart else [])
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               **(env or {})}
        with open(log_file, "a") as log:
            log.write(("resuming from checkpoint: " if restart else "") + " ".join(cmd) + "\n")
            log.flush()
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        if proc.returncode != 0 or not model.exists():
            raise RuntimeError(f"mace_run_train failed (exit {proc.returncode}); see {log_file}")
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(output).with_suffix(".model.tmp")
    shutil.copyfile(stage_two if stage_two.exists() else model, tmp)
    os.replace(tmp, output)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: mace_run_train arguments that change where or how fast it runs, not the model.
EXECUTION_ARGS = ("device", "valid_batch_size", "num_workers", "pin_memory", "log_level")


def training_key(args: list[str]) -> dict:
    """What decides a training run: its arguments (less :data:`EXECUTION_ARGS`)
    and the SHA-256 of every file an argument names (train, valid, foundation,
    pre-training data), so that a file rewritten with other content under the
    same path retrains, and a run moved to a GPU reuses."""
    science = [a for a in args if a.split("=", 1)[0].lstrip("-") not in EXECUTION_ARGS]
    files = {}
    for arg in science:
        value = arg.split("=", 1)[-1]
        if value and os.path.isfile(value):
            files[value] = file_sha256(value)
    return {"arguments": science, "files": files}


def train_members(members: list[dict], threads: int, gpus: list[str]) -> None:
    """Train several members at once (``committee.train_in_one_job``), each in
    its own mace_run_train process with ``threads // len(members)`` threads
    and, when ``gpus`` are given, member k alone on ``gpus[k % len(gpus)]``.

    ``members``: the keyword arguments of :func:`train_member` without
    ``threads``. Every member runs to its end even when another fails (its
    model, or its checkpoints, serve the retry); then the failures are raised
    together, each naming its member.
    """
    per = max(1, threads // len(members))

    def one(k: int, member: dict) -> None:
        env = {"CUDA_VISIBLE_DEVICES": gpus[k % len(gpus)]} if gpus else {}
        train_member(threads=per, env=env, **member)

    with ThreadPoolExecutor(max_workers=len(members)) as pool:
        futures = [pool.submit(one, k, m) for k, m in enumerate(members)]
    failed = [f"{m['name']}: {f.exception()}" for m, f in zip(members, futures)
              if f.exception() is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(members)} members failed: " + "; ".join(failed))


def model_e0s(path: str | os.PathLike) -> dict[str, float]:
    """The isolated-atom energies (eV) stored in a MACE model file, by element
    (the first head of a multi-head model)."""
    import torch
    from ase.data import chemical_symbols

    model = torch.load(path, map_location="cpu", weights_only=False)
    energies = model.atomic_energies_fn.atomic_energies.detach().cpu().reshape(
        -1, len(model.atomic_numbers))[0]
    return {chemical_symbols[int(z)]: float(e) for z, e in zip(model.atomic_numbers, energies)}


def e0s_mismatch(reference: dict[str, float], model: dict[str, float],
                 tolerance: float = 1.0) -> dict[str, float]:
    """Elements whose E0 in ``model`` differs from the reference's by more than
    ``tolerance`` eV: {element: model - reference}."""
    return {el: model[el] - e for el, e in sorted(reference.items())
            if el in model and abs(model[el] - e) > tolerance}
