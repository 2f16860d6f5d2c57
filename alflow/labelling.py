"""Labelling chunks of structures with a reference, with result caches.

:func:`label_chunk` labels one chunk, keeps failures aside (never stopping the
chunk) and reuses finished per-structure results when a killed job is rerun;
:func:`label_cached` and :func:`isolated_atom_cached` keep results in the
campaign-wide label cache, keyed by structure and level of theory
(:func:`structure_hash`).  A finished chunk records its structures, so that a
finished stage is never relabelled silently with other structures
(:class:`RelabelRefused`, :func:`unpaid_structures`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
from ase import Atoms

from . import ENERGY_KEY, FAILURE_KEY, FORCES_KEY, RETRY_KEY, STRESS_KEY
from .io import atomic_path, read_frames, write_frames
from .reference import LabelFailure, Reference, labelled_copy

log = logging.getLogger(__name__)

__all__ = [
    "RelabelRefused",
    "SystematicFailure",
    "cache_path",
    "geometry_key",
    "isolated_atom_cached",
    "label_cached",
    "label_chunk",
    "relabel_allowed",
    "relabel_refused",
    "structure_hash",
    "unpaid_structures",
]

#: Set to 1 to let a finished label chunk be relabelled with other structures.
RELABEL_ENV = "ALFLOW_RELABEL"
FINISHED_NAME = "finished.json"

#: Longest failure message stored in ``info[FAILURE_KEY]``.
MAX_FAILURE_CHARS = 300
RESULT_NAME = "result.extxyz"
HASH_NAME = "result.sha256"


def structure_hash(atoms: Atoms, reference: Reference) -> str:
    """SHA-256 of the structure (:func:`geometry_key`) and the reference's
    level of theory: the key of a label in the caches."""
    return hashlib.sha256(f"{geometry_key(atoms)}:{reference.fingerprint()}".encode()).hexdigest()


def cache_path(cache: str | os.PathLike[str], key: str) -> Path:
    """Where the campaign-wide label cache keeps the result of ``key``."""
    return Path(cache) / key[:2] / f"{key}.extxyz"


def geometry_key(atoms: Atoms) -> str:
    """SHA-256 of numbers, positions and cell (to 1e-5 Å, what survives an
    extxyz round trip) and pbc: the same structure, whatever the reference."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(atoms.numbers, dtype=np.int64).tobytes())
    for array in (atoms.positions, atoms.cell.array):
        digest.update(np.ascontiguousarray(np.round(array, 5) + 0.0, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(atoms.pbc, dtype=np.bool_).tobytes())
    return digest.hexdigest()


def unpaid_structures(frames: list[Atoms], label_dir: str | os.PathLike[str]) -> int:
    """How many of ``frames`` a stage whose labels already finished
    (``label_dir/work_*/finished.json``) has not labelled: the reference
    calculations a new selection for a finished iteration would cost. 0 when
    no chunk of the stage has finished (a first run)."""
    done: set[str] = set()
    finished = False
    for record in Path(label_dir).glob(f"work_*/{FINISHED_NAME}"):
        try:
            done.update(json.loads(record.read_text()).get("geometries", []))
            finished = True
        except (OSError, ValueError):
            continue
    return sum(geometry_key(a) not in done for a in frames) if finished else 0


def relabel_allowed() -> bool:
    return os.environ.get(RELABEL_ENV) == "1"


def relabel_refused(what: str, n_new: int) -> RelabelRefused:
    return RelabelRefused(
        f"{what} was finished with other structures, and labelling these would cost "
        f"{n_new} new reference calculation(s) for a stage that is already done. The level of "
        "theory (the CP2K template), or something that decides which frames a finished "
        "iteration selects (selection, sampling, seed, a model), changed since it finished, "
        "so Snakemake reruns it. Finished labels are never replaced silently: revert the "
        "change and run again (the finished selections are remade as they were, at no "
        "reference cost), or start the run with `--rerun-triggers mtime input` so that changed "
        "settings apply only to iterations not yet run. To pay for the new labels, run again "
        f"with {RELABEL_ENV}=1 in the environment.")


def label_cached(reference: Reference, atoms: Atoms, workdir: str | os.PathLike[str],
                 cache: str | os.PathLike[str] | None = None,
                 guess: str | os.PathLike[str] | None = None) -> Atoms:
    """:meth:`Reference.label` with result caches.

    A finished result is stored as ``result.extxyz`` plus ``result.sha256``
    (:func:`structure_hash`) in ``workdir`` and, when ``cache`` is given, in
    the campaign-wide cache under its key (:func:`cache_path`), which any
    chunk of any stage finds again: a structure relabelled by a rerun, a
    changed ``chunk_size`` or another profile is never computed twice.
    Failures are not cached (a rerun tries them again). ``guess``: see
    :meth:`Reference.label`.
    """
    workdir = Path(workdir)
    key = structure_hash(atoms, reference)
    cached = _read_cached(workdir, key)
    if cached is None and cache is not None:
        cached = _read_frame(cache_path(cache, key))
    if cached is not None:
        return labelled_copy(atoms, cached.info[ENERGY_KEY], cached.arrays[FORCES_KEY],
                             cached.info.get(STRESS_KEY), cached.info.get(RETRY_KEY))
    (workdir / HASH_NAME).unlink(missing_ok=True)
    labelled = reference.label(atoms, workdir, guess=guess)
    write_frames(workdir / RESULT_NAME, [labelled])
    with atomic_path(workdir / HASH_NAME) as tmp:
        tmp.write_text(key + "\n")
    if cache is not None:
        cache_path(cache, key).parent.mkdir(parents=True, exist_ok=True)
        write_frames(cache_path(cache, key), [labelled])
    return labelled


def isolated_atom_cached(reference: Reference, symbol: str, workdir: str | os.PathLike[str],
                         cache: str | os.PathLike[str]) -> float:
    """:meth:`Reference.isolated_atom_energy`, kept in the label cache under
    the element and the level of theory."""
    key = hashlib.sha256(f"isolated_atom:{symbol}:{reference.fingerprint()}".encode()).hexdigest()
    path = Path(cache) / key[:2] / f"{key}.json"
    try:
        return float(json.loads(path.read_text())["energy"])
    except (OSError, ValueError, KeyError):
        pass
    energy = reference.isolated_atom_energy(symbol, workdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"element": symbol, "energy": energy}))
    return energy


def _read_cached(workdir: Path, key: str) -> Atoms | None:
    try:
        if (workdir / HASH_NAME).read_text().strip() != key:
            return None
    except OSError:
        return None
    return _read_frame(workdir / RESULT_NAME)


def _read_frame(path: Path) -> Atoms | None:
    """A cached labelled frame, or None when missing, unreadable or unlabelled."""
    try:
        frame = ase.io.read(path, format="extxyz")
    except Exception:  # missing, stale or unreadable: recompute
        return None
    if ENERGY_KEY not in frame.info or FORCES_KEY not in frame.arrays:
        return None
    return frame


def label_chunk(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    failed_path: str | os.PathLike[str],
    reference: Reference,
    workdir: str | os.PathLike[str],
    cache: str | os.PathLike[str] | None = None,
    allow_relabel: bool | None = None,
) -> dict[str, Any]:
    """Label every frame of ``in_path`` (extxyz, may be empty).

    Frame ``k`` is computed in ``workdir/struct_{k:04d}``, in
    :func:`similarity_order`; with ``reference.concurrent`` = n > 1, as n
    streams side by side (:func:`split_streams`), each structure starting
    from the previous one of its stream.  Labelled frames
    go to ``out_path``, failed ones (input frame plus ``info[FAILURE_KEY] =
    "<kind>: <message>"``) to ``failed_path``; both are written atomically,
    as empty files when there is nothing.  When every structure (at least
    two) failed with the same error, the chunk itself fails with
    :class:`SystematicFailure` naming that error: a missing basis set or a
    broken launcher is not a property of the structures.  Returns ``{"n_input",
    "n_labelled", "n_failed", "failures": {kind: count}}``.

    A finished chunk records its structures (``workdir/finished.json``). When
    it is run again with other structures that are not in ``cache`` (the
    selection of a finished iteration changed), it refuses with
    :class:`RelabelRefused` instead of paying for them, unless
    ``allow_relabel`` (default: the environment variable ``ALFLOW_RELABEL=1``).
    """
    frames = read_frames(in_path)
    keys = [structure_hash(a, reference) for a in frames]
    if allow_relabel is None:
        allow_relabel = relabel_allowed()
    if not allow_relabel:
        _check_not_finished_with_others(Path(workdir) / FINISHED_NAME, keys, cache, out_path)
    results: dict[int, Atoms] = {}
    failures: Counter[str] = Counter()

    stopping, counting = threading.Event(), threading.Lock()

    def label_stream(stream: list[int]) -> None:
        """Label frames in turn, each SCF starting from the wavefunction of
        the stream's previous structure with the same atoms."""
        guesses: dict[bytes, Path] = {}  # atoms (numbers in order) -> the latest wavefunction
        for k in stream:
            if stopping.is_set():
                return
            atoms, start = frames[k], time.perf_counter()
            structdir = Path(workdir) / f"struct_{k:04d}"
            species = np.asarray(atoms.numbers, dtype=np.int64).tobytes()
            try:
                results[k] = label_cached(reference, atoms, structdir, cache,
                                          guess=guesses.get(species))
                log.info("structure %d/%d labelled in %.1f s", k + 1, len(frames),
                         time.perf_counter() - start)
                if (structdir / reference.GUESS_NAME).exists():
                    guesses[species] = structdir / reference.GUESS_NAME
            except LabelFailure as exc:
                results[k] = _failed_frame(atoms, exc)
                with counting:
                    failures[exc.kind] += 1
                log.warning("structure %d/%d FAILED (%s): %s", k + 1, len(frames), exc.kind,
                            exc.message)

    streams = split_streams(similarity_order(frames), reference.concurrent)
    if len(streams) > 1:
        log.info("labelling %d structures as %d streams side by side", len(frames), len(streams))
    pool = ThreadPoolExecutor(max_workers=max(1, len(streams)))
    try:
        # anything but a LabelFailure fails the chunk
        wait_watching_signals([pool.submit(label_stream, stream) for stream in streams])
    except BaseException:  # an error, Ctrl-C, SIGTERM (exit_on_sigterm): stop every stream
        stopping.set()
        reference.stop()
        raise
    finally:
        pool.shutdown(wait=True)
    for path in Path(workdir).glob(f"struct_*/{reference.GUESS_NAME}"):
        path.unlink()  # scratch: wavefunctions are not kept
    labelled = [results[k] for k in range(len(frames)) if FAILURE_KEY not in results[k].info]
    failed = [results[k] for k in range(len(frames)) if FAILURE_KEY in results[k].info]
    systematic = None if labelled else _systematic_failure(failed)
    if systematic:
        raise SystematicFailure(
            f"all {len(frames)} structures of {in_path} failed with the same error, so the "
            f"reference itself is the problem, not the structures: {systematic} (CP2K input "
            f"and output of each: {Path(workdir) / 'struct_*'})")
    write_frames(out_path, labelled)
    write_frames(failed_path, failed)
    with atomic_path(Path(workdir) / FINISHED_NAME) as tmp:
        tmp.write_text(json.dumps({"output": str(out_path), "structures": keys,
                                   "geometries": [geometry_key(a) for a in frames]}))
    return {
        "n_input": len(frames),
        "n_labelled": len(labelled),
        "n_failed": len(failed),
        "failures": dict(failures),
    }


def wait_watching_signals(futures: list[Future], poll: float = 0.5) -> None:
    """Wait until every future is done; as soon as one fails, raise its error.

    The kernel may deliver a SIGTERM (``scancel``) to any thread of the
    process, and CPython runs the handler (:func:`exit_on_sigterm`) only when
    the main thread runs Python code: a main thread blocked in
    ``Future.result()`` would not see it until a structure finished, hours
    later for a long CP2K run. Waking every ``poll`` seconds lets it act."""
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=poll, return_when=FIRST_EXCEPTION)
        for future in done:
            error = future.exception()
            if error is not None:
                raise error


def split_streams(order: list[int], n: int) -> list[list[int]]:
    """``order`` cut into at most ``n`` consecutive streams of nearly equal
    length (longer ones first): neighbours stay in the same stream, so that
    each structure can start from the previous one's wavefunction."""
    n = max(1, min(int(n), len(order)))
    size, extra = divmod(len(order), n)
    bounds = [0]
    for i in range(n):
        bounds.append(bounds[-1] + size + (i < extra))
    return [order[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def similarity_order(frames: list[Atoms]) -> list[int]:
    """The order in which to label ``frames`` so that each one is close to
    the one before (its SCF starts from that one's wavefunction): by walker
    and MD step when the frames carry them (``info`` ``walker``, ``step``),
    else as given."""
    if all("walker" in a.info and "step" in a.info for a in frames):
        return sorted(range(len(frames)),
                      key=lambda k: (int(frames[k].info["walker"]), int(frames[k].info["step"])))
    return list(range(len(frames)))


class SystematicFailure(RuntimeError):
    """Every structure of a chunk failed for the same reason: the chunk fails."""


class RelabelRefused(RuntimeError):
    """A finished chunk would be relabelled with structures that cost new
    reference calculations."""


def _check_not_finished_with_others(record: Path, keys: list[str],
                                    cache: str | os.PathLike[str] | None, out_path) -> None:
    try:
        done = set(json.loads(record.read_text())["structures"])
    except (OSError, ValueError, KeyError):
        return  # never finished: a first run, or one that was killed
    new = [k for k in keys if k not in done
           and (cache is None or not cache_path(cache, k).exists())]
    if not new:
        return
    raise relabel_refused(str(out_path), len(new))


def _systematic_failure(failed: list[Atoms], minimum: int = 2) -> str | None:
    """The failure shared by every structure (at least ``minimum``), numbers
    ignored when comparing; None when they differ or some were labelled."""
    reasons = {re.sub(r"\d+(\.\d+)?", "#", str(a.info.get(FAILURE_KEY))) for a in failed}
    return failed[0].info[FAILURE_KEY] if len(failed) >= minimum and len(reasons) == 1 else None


def _failed_frame(atoms: Atoms, failure: LabelFailure) -> Atoms:
    frame = atoms.copy()
    frame.calc = None
    # extxyz stores it as a quoted string: no double quotes or backslashes
    text = f"{failure.kind}: {failure.message}".replace('"', "'").replace("\\", "/")
    if len(text) > MAX_FAILURE_CHARS:
        text = text[: MAX_FAILURE_CHARS - 3] + "..."
    frame.info[FAILURE_KEY] = text
    return frame
