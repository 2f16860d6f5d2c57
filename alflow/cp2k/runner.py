"""Running CP2K: one input in a work directory, with a launcher, threads, a
time limit and scratch files removed, then
:func:`~alflow.cp2k.output.parse_output` on its output.

The time limit is graceful: CP2K gets it as ``GLOBAL/WALLTIME`` and stops
itself (it checks the time at every SCF step, ends the run and writes its
output). Only a run still going well past it (a step that never returns, a
hung MPI launcher) gets SIGTERM and, after :data:`TERM_GRACE_S`, SIGKILL.
Either way the structure fails as ``timeout``."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from ase import Atoms

from .inputs import make_input
from .output import Cp2kError, parse_output, shorten
from .template import Cp2kTemplate

INPUT_NAME = "label.inp"
OUTPUT_NAME = "label.out"
LOG_NAME = "label.log"  # stdout + stderr of the launcher/CP2K, when not empty
WFN_NAME = "label-RESTART.wfn"  # the converged wavefunction, when the input asks for it
#: Scratch files removed after each run (wavefunction restarts and backups).
SCRATCH_PATTERNS = ("*.wfn", "*.wfn.bak-*", "*.kp", "*.kp.bak-*")
_OPENMPI_LAUNCHERS = {"mpirun", "mpiexec", "orterun"}
#: CP2K's own words when it stopped at its WALLTIME.
WALLTIME_MARKER = "exceeded requested execution time"
#: Seconds between SIGTERM and SIGKILL for a run past its limit.
TERM_GRACE_S = 10.0

# CP2K runs this process waits for (several when a label job runs structures
# side by side in threads), so that an interrupted job stops all of them.
_LIVE: set[subprocess.Popen[str]] = set()
_LIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()


def kill_after(timeout: float) -> float:
    """When a run with time limit ``timeout`` (s), which CP2K enforces itself,
    is signalled: the limit plus a margin for the last SCF step and the
    forces (a tenth of the limit, 10 s to 5 min)."""
    return timeout + min(max(0.1 * timeout, 10.0), 300.0)


def with_walltime(input_text: str, seconds: float) -> str:
    """``input_text`` with ``WALLTIME seconds`` in its GLOBAL section (kept
    as it is when the input sets a WALLTIME of its own)."""
    lines = input_text.splitlines(keepends=True)
    start = next((k for k, line in enumerate(lines)
                  if line.strip().upper().startswith("&GLOBAL")), None)
    if start is None:
        return f"&GLOBAL\n  WALLTIME {seconds:g}\n&END GLOBAL\n" + input_text
    end = next(k for k in range(start + 1, len(lines))
               if lines[k].strip().upper().startswith("&END"))
    if any(line.strip().upper().startswith("WALLTIME") for line in lines[start + 1:end]):
        return input_text
    return "".join(lines[:start + 1] + [f"  WALLTIME {seconds:g}\n"] + lines[start + 1:])


def run_cp2k(atoms: Atoms, template: Cp2kTemplate, workdir: str | os.PathLike[str], *,
             guess: str | os.PathLike[str] | None = None,
             keep_wfn: str | os.PathLike[str] | None = None,
             **run_kwargs: Any) -> dict[str, Any]:
    """Singlepoint of ``atoms`` with CP2K in ``workdir``: :func:`make_input`,
    then :func:`run_input` (which takes the launch options ``command``,
    ``mpi``, ``tasks``, ``cpus_per_task`` and ``timeout``). ``guess``: a
    wavefunction file to start the SCF from (same atoms in the same order);
    ``keep_wfn``: where to keep this run's converged wavefunction."""
    text = make_input(template, atoms, guess=str(guess) if guess else None,
                      write_wfn=keep_wfn is not None)
    return run_input(text, len(atoms), workdir, keep_wfn=keep_wfn, **run_kwargs)


def run_input(
    input_text: str,
    n_atoms: int,
    workdir: str | os.PathLike[str],
    *,
    command: str = "cp2k",
    mpi: str | None = "mpirun",
    tasks: int = 1,
    cpus_per_task: int = 1,
    timeout: float | None = None,
    keep_wfn: str | os.PathLike[str] | None = None,
    concurrent: int = 1,
) -> dict[str, Any]:
    """Run a ready CP2K input in ``workdir`` and parse its output (:func:`parse_output`).

    Runs ``{mpi} -n {tasks} {command} -i label.inp -o label.out`` (no launcher
    when ``mpi`` is empty) with ``OMP_NUM_THREADS={cpus_per_task}``, and with
    ``timeout`` (s) as CP2K's WALLTIME (see the module). ``concurrent``: how
    many CP2K runs this job starts side by side (see :func:`launch_command`,
    :func:`launch_environment`). The wavefunction
    file the run wrote, if any, is moved to ``keep_wfn``; other scratch
    files are removed.  Raises
    :class:`Cp2kError` for any failed calculation; an unusable ``command``
    raises :class:`OSError`.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if timeout:
        input_text = with_walltime(input_text, timeout)
    (workdir / INPUT_NAME).write_text(input_text)
    output = workdir / OUTPUT_NAME
    for stale in (output, workdir / LOG_NAME):
        stale.unlink(missing_ok=True)  # never parse a stale output
    argv = launch_command(command, mpi, tasks, cpus_per_task, concurrent)
    try:
        returncode, log = _execute(argv, workdir, launch_environment(argv, cpus_per_task, concurrent),
                                   timeout)
    finally:
        wfn = workdir / WFN_NAME
        if keep_wfn is not None and wfn.is_file():
            os.replace(wfn, keep_wfn)
        _remove_scratch(workdir)
    if not output.is_file():
        raise Cp2kError("crashed", f"no {OUTPUT_NAME} written (exit status {returncode}): {_tail(log)}")
    text = output.read_text(errors="replace")
    if timeout and WALLTIME_MARKER in text:
        raise Cp2kError("timeout", f"exceeded the per-structure time limit of {timeout:g} s: "
                        "CP2K stopped itself at its WALLTIME")
    try:
        result = parse_output(text, n_atoms)
    except Cp2kError as exc:
        if returncode != 0 and exc.kind in ("truncated", "parse_error"):
            raise Cp2kError("crashed", f"exit status {returncode}: {_tail(log or text)}") from exc
        raise
    if returncode != 0:
        raise Cp2kError("crashed", f"exit status {returncode} despite a complete output: {_tail(log or text)}")
    return result


def launch_command(command: str, mpi: str | None, tasks: int,
                   cpus_per_task: int = 1, concurrent: int = 1) -> list[str]:
    """The argv of one CP2K run (launcher flags split like a shell would).

    ``srun`` also gets ``-c cpus_per_task`` (unless the launcher string sets
    it): since Slurm 22.05 a job step no longer inherits the job's
    ``--cpus-per-task``, and without it every OpenMP thread of a rank would
    share one core. When the job runs ``concurrent`` > 1 CP2K runs side by
    side, ``srun`` also gets ``--exact`` (unless the launcher string has
    ``--exact``, ``--exclusive`` or ``--overlap``): each step then holds only
    the cores it asks for, and the steps run at once instead of waiting for
    each other."""
    argv = shlex.split(command) + ["-i", INPUT_NAME, "-o", OUTPUT_NAME]
    if mpi:
        launcher = shlex.split(mpi)
        flags = ["-n", str(int(tasks))]
        if os.path.basename(launcher[0]) == "srun":
            if not any(a in ("-c", "--cpus-per-task") or a.startswith("--cpus-per-task=")
                       for a in launcher):
                flags += ["-c", str(int(cpus_per_task))]
            if concurrent > 1 and not any(a.split("=")[0] in ("--exact", "--exclusive", "--overlap")
                                          for a in launcher):
                flags.insert(0, "--exact")
        argv = launcher + flags + argv
    return argv


def launch_environment(argv: Sequence[str], cpus_per_task: int,
                       concurrent: int = 1) -> dict[str, str]:
    """The environment of one CP2K run: this process's, with
    ``OMP_NUM_THREADS={cpus_per_task}`` and, for Open MPI launchers, running
    as root allowed and no core binding when ranks have several threads or
    ``concurrent`` > 1 runs share the machine."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(int(cpus_per_task))
    if os.path.basename(argv[0]) in _OPENMPI_LAUNCHERS:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
            env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        if cpus_per_task > 1 or concurrent > 1:
            # Open MPI binds each rank to one core by default (for <= 2 ranks),
            # which would put all OpenMP threads of a rank on that core, and
            # rank 0 of every concurrent run on the same first core.
            env.setdefault("OMPI_MCA_hwloc_base_binding_policy", "none")
    return env


def _execute(argv: list[str], workdir: Path, env: dict[str, str], timeout: float | None) -> tuple[int, str]:
    """Run ``argv`` in its own process group; (exit status, stdout+stderr)."""
    with _LIVE_LOCK:
        if _STOPPING.is_set():
            raise Cp2kError("interrupted", "the job is being stopped: CP2K was not started")
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        _LIVE.add(proc)
    try:
        return _wait(proc, workdir, timeout)
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(proc)


def stop_all_runs() -> int:
    """Stop every CP2K run of this process (their whole process groups:
    SIGTERM, SIGKILL after :data:`TERM_GRACE_S`) and start no new one: for
    a job that is interrupted while structures run side by side. Returns
    how many runs were stopped."""
    with _LIVE_LOCK:
        _STOPPING.set()
        procs = list(_LIVE)
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + TERM_GRACE_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
    return len(procs)


def exit_on_sigterm() -> None:
    """Turn SIGTERM (``scancel``, a local Snakemake stopping its jobs) into
    SystemExit in the main thread, so that the CP2K runs of the job are
    stopped (:func:`stop_all_runs`, or the waiting caller's own clean-up)
    instead of being left running without it."""
    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handler)


def _signal_group(proc: subprocess.Popen[str], signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass


def _communicate(proc: subprocess.Popen[str], limit: float | None, poll: float = 0.5) -> str:
    """``proc.communicate(timeout=limit)``'s output, waking every ``poll``
    seconds: the kernel may hand a SIGTERM to another thread of this process
    (a BLAS thread, a label stream), and CPython runs its handler
    (:func:`exit_on_sigterm`) only when the main thread runs Python code,
    which a read blocked until CP2K ends does not."""
    end = None if limit is None else time.monotonic() + limit
    while True:
        step = poll if end is None else min(poll, max(0.0, end - time.monotonic()))
        try:
            return proc.communicate(timeout=step)[0]
        except subprocess.TimeoutExpired:
            if end is not None and time.monotonic() >= end:
                raise


def _wait(proc: subprocess.Popen[str], workdir: Path, timeout: float | None) -> tuple[int, str]:
    try:
        log = _communicate(proc, kill_after(timeout) if timeout else None)
    except subprocess.TimeoutExpired:
        _kill_group(proc, graceful=True)
        proc.communicate()
        raise Cp2kError("timeout", f"exceeded the per-structure time limit of {timeout:g} s "
                        "and did not stop at its WALLTIME: it was terminated") from None
    except BaseException:
        _kill_group(proc)
        raise
    if log.strip():
        (workdir / LOG_NAME).write_text(log)
    return proc.returncode, log


def _kill_group(proc: subprocess.Popen[str], graceful: bool = False) -> None:
    """Stop the run's whole process group (launcher, ranks): with
    ``graceful`` SIGTERM first, SIGKILL after :data:`TERM_GRACE_S`."""
    if graceful:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=TERM_GRACE_S)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _remove_scratch(workdir: Path) -> None:
    for pattern in SCRATCH_PATTERNS:
        for path in workdir.glob(pattern):
            path.unlink(missing_ok=True)


def _tail(text: str, lines: int = 6, limit: int = 400) -> str:
    kept = [line.strip() for line in text.splitlines() if line.strip() and not set(line.strip()) <= {"-", "*", "="}]
    return shorten(" | ".join(kept[-lines:]), limit) or "(no output)"
