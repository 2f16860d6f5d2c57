"""MD walkers driven by the committee, with per-frame committee deviation.

A walker is one MD trajectory at one thermodynamic condition. Walkers are
grouped into packs; one process runs a pack and loads the committee once.
Where a walker starts each iteration is decided by :func:`plan_starts`:
its last trusted state of the previous iteration (positions, cell and
momenta) when it ran long enough, else a trusted frame with fresh velocities.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Collection

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.langevinbaoab import LangevinBAOAB
from ase.calculators.calculator import Calculator, all_changes
from ase.constraints import FixCom
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.neighborlist import neighbor_list

from . import (COMMITTEE_ENERGY_KEY, COMMITTEE_FORCES_KEY, DESCRIPTOR_KEY, DEVIATION_KEY,
               MEMBER_ENERGIES_KEY)

STOP_KEY = "stop"  # Atoms.info of the frame where a walker stopped: the reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Walker:
    index: int
    temperature: float  # K
    pressure: float | None  # GPa; None = NVT
    structure: int  # which initial structure it starts from


def make_walkers(temperatures: list[float], pressures: list[float] | None,
                 per_condition: int, n_structures: int) -> list[Walker]:
    """The walker grid: every (temperature, pressure) condition x per_condition copies."""
    conditions = [(t, p) for t in temperatures for p in (pressures or [None])]
    walkers = []
    for t, p in conditions:
        for _ in range(per_condition):
            w = len(walkers)
            walkers.append(Walker(w, float(t), None if p is None else float(p), w % n_structures))
    return walkers


def pack_walkers(walkers: list[Walker], n_packs: int, pack: int) -> list[Walker]:
    """Walkers run by ``pack`` (walker w belongs to pack w mod n_packs)."""
    return [w for w in walkers if w.index % n_packs == pack]


def force_deviation(forces_comm: np.ndarray) -> float:
    """Max over atoms of the committee force standard deviation (eV/Å).

    ``forces_comm`` has shape (n_models, n_atoms, 3); for each atom the
    deviation is sqrt(mean_m |F_m - <F>|^2), as in DP-GEN's max_devi_f.
    """
    forces_comm = np.asarray(forces_comm, dtype=float)
    mean = forces_comm.mean(axis=0)
    per_atom = np.sqrt(((forces_comm - mean) ** 2).sum(axis=-1).mean(axis=0))
    return float(per_atom.max()) if np.all(np.isfinite(per_atom)) else float("nan")


def structure_descriptor(calc, atoms: Atoms, species: list[int]) -> np.ndarray:
    """A per-structure MACE descriptor: the first committee member's invariant
    node features (mace-torch's ``get_descriptors``) averaged over the atoms of
    each element in ``species`` (atomic numbers), concatenated."""
    desc = calc.get_descriptors(atoms, invariants_only=True)
    desc = np.asarray(desc[0] if isinstance(desc, list) else desc)
    parts = [desc[atoms.numbers == z].mean(axis=0) if np.any(atoms.numbers == z)
             else np.zeros(desc.shape[1]) for z in species]
    return np.concatenate(parts)


def committee_deviation(calc) -> float:
    """Force deviation from a calculator's last results.

    Works with mace-torch's MACECalculator, which stores ``forces_comm``
    for a committee; a calculator without it has deviation 0.
    """
    forces = calc.results.get("forces")
    if forces is None or not np.all(np.isfinite(forces)):
        return float("nan")
    comm = calc.results.get("forces_comm")
    return 0.0 if comm is None else force_deviation(comm)


def energy_spread_gradient(energy_comm, forces_comm) -> np.ndarray:
    """The gradient of the committee's energy standard deviation σ_E with
    respect to the positions (eV/Å, shape (n_atoms, 3)), from each member's
    energy E_k and forces F_k = -∇E_k alone:
    ∇σ_E = -1/(K σ_E) Σ_k (E_k - Ē)(F_k - F̄). Zero where the members agree
    (σ_E = 0), where the gradient is undefined."""
    e = np.asarray(energy_comm, dtype=float)
    f = np.asarray(forces_comm, dtype=float)
    de, df = e - e.mean(), f - f.mean(axis=0)
    sigma = np.sqrt((de ** 2).mean())
    if not sigma > 0:
        return np.zeros(f.shape[1:])
    return -np.einsum("k,kij->ij", de, df) / (len(e) * sigma)


WALL_CUTOFF = 4.0  # Å: pairs of elements closer than this in the data set a wall (closest_pairs)


def closest_pairs(frames: list[Atoms], cutoff: float = WALL_CUTOFF) -> np.ndarray:
    """The closest distance of each pair of elements over ``frames`` (Å), as a
    symmetric matrix indexed by atomic numbers; a pair never closer than
    ``cutoff`` in any frame gets ``cutoff``."""
    closest = np.full((119, 119), float(cutoff))
    for atoms in frames:
        if len(atoms) < 2:
            continue
        i, j, d = neighbor_list("ijd", atoms, cutoff)
        zi, zj = atoms.numbers[i], atoms.numbers[j]
        np.minimum.at(closest, (zi, zj), d)
    return np.minimum(closest, closest.T)


def inside_wall(atoms: Atoms, closest: np.ndarray, fraction: float) -> bool:
    """Whether two atoms are closer than ``fraction`` x the closest distance of
    their elements in the data (:func:`closest_pairs`)."""
    if len(atoms) < 2:
        return False
    i, j, d = neighbor_list("ijd", atoms, fraction * float(closest.max()))
    return bool(np.any(d < fraction * closest[atoms.numbers[i], atoms.numbers[j]]))


UNBIASED_FORCES_KEY = "forces_unbiased"  # calculator results under a bias: the committee mean


class UncertaintyBias(Calculator):
    """A walker's committee calculator with forces biased towards where the
    members disagree: the MD runs on Ē - τ σ_E, the hyperactive learning of
    van der Oord et al. (npj Comput. Mater. 2023), so walkers reach
    configurations the committee does not know sooner than thermal motion
    would take them there. Forces become F̄ + τ ∇σ_E
    (:func:`energy_spread_gradient`); energy, stress, per-member results and
    the committee deviation stay the committee's, and ``forces_unbiased``
    keeps F̄ for the frames (their labels are compared with it).

    ``strength`` is τ relative to the forces, adapted as in that paper:
    τ = strength · ⟨|F̄|⟩ / ⟨|∇σ_E|⟩, both means over the atoms of every
    step this calculator has evaluated, so the bias pushes with about
    ``strength`` times the typical physical force.

    ``closest`` (:func:`closest_pairs` of the data) and ``wall`` > 0 set a
    wall: while two atoms are closer than ``wall`` × the closest distance of
    their elements in the data, the bias is off and the walker feels the
    committee alone. The committee has no data there and no disagreement
    about a repulsion it never saw, so the bias would push on into
    collisions (benchmarks/RESULTS.md)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, calc, strength: float, *, closest: np.ndarray | None = None,
                 wall: float = 0.0) -> None:
        super().__init__()
        if not strength > 0:
            raise ValueError(f"bias strength must be > 0, got {strength}")
        if wall and closest is None:
            raise ValueError("a bias wall needs the closest pairs of the data")
        self.inner, self.strength = calc, float(strength)
        self.closest, self.wall = closest, float(wall)
        self._force_sum = self._grad_sum = 0.0
        self.steps = self.steps_off = 0  # steps evaluated, and those inside the wall
        self.tau = 0.0  # the last τ used (eV)

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.inner.calculate(self.atoms, properties or ["energy", "forces"], system_changes)
        results = dict(self.inner.results)
        forces = results.get("forces")
        comm, ecomm = results.get("forces_comm"), results.get("energy_comm")
        if forces is not None and comm is not None and ecomm is not None \
                and np.all(np.isfinite(forces)) and np.all(np.isfinite(comm)):
            grad = energy_spread_gradient(ecomm, comm)
            self._force_sum += float(np.linalg.norm(forces, axis=1).mean())
            self._grad_sum += float(np.linalg.norm(grad, axis=1).mean())
            self.tau = self.strength * self._force_sum / self._grad_sum if self._grad_sum else 0.0
            results[UNBIASED_FORCES_KEY] = np.array(forces, dtype=float)
            self.steps += 1
            if self.wall and inside_wall(self.atoms, self.closest, self.wall):
                self.steps_off += 1
            else:
                results["forces"] = forces + self.tau * grad
        self.results = results


START_POLICIES = ("auto", "continue", "initial")


def fresh(atoms: Atoms) -> Atoms:
    """A clean copy to start a walker from: no momenta (the walker draws fresh
    Maxwell-Boltzmann velocities), no labels, no calculator."""
    return Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)


def last_segment_start(record: dict) -> int:
    """The step number of the first step of a walker's last segment (frames
    are numbered across segments, a stop costing a step: :func:`explore`)."""
    return sum(s["steps"] + (s["stop_reason"] != "completed") for s in record["segments"][:-1])


def distrusted_walkers(errors: dict[str, dict[str, float]], records: dict[int, dict],
                       level: float) -> dict[int, float]:
    """Walkers whose last segment of the previous iteration holds a labelled
    frame with a true max atomic force error above ``level`` (eV/Å): the
    committee drove them, unaware, where it is badly wrong (on water, into
    molecular collisions), so their last state is no place to continue from.
    ``errors``: :func:`alflow.calibration.walker_errors`; ``records``: the
    walkers' records of that iteration, by index. Returns {walker: the
    largest such error}."""
    out = {}
    for w, record in records.items():
        start = last_segment_start(record) if record.get("segments") else 0
        bad = [e for step, e in errors.get(str(w), {}).items() if int(step) >= start and e > level]
        if bad:
            out[w] = max(bad)
    return out


def plan_starts(walkers: list[Walker], *, policy: str, initial: list[Atoms],
                previous: dict[int, tuple[Atoms, dict]] | None, trusted: list[Atoms],
                steps: int, min_run_fraction: float, seed: int,
                distrusted: Collection[int] = ()) -> list[tuple[Atoms, str]]:
    """Where each walker starts this iteration, and a note saying why.

    ``previous`` maps a walker's index to its last trusted state and its record
    (:func:`explore`) of the previous iteration (None in iteration 1).
    Policies:

      * ``initial``: every walker from its initial structure, fresh velocities
        (DP-GEN's way; also what iteration 1 does under every policy).
      * ``continue``: every walker from its last trusted state.
      * ``auto``: continue when the walker's last segment of the previous
        iteration completed or ran at least ``min_run_fraction`` of ``steps``
        (:func:`explore`); otherwise restart it from a trusted frame
        (``trusted``: the initial structures and the labelled dataset), drawn
        with a seeded generator, with fresh velocities. A walker that stalled at
        the edge of what the committee knows would stall there again.
        So is a walker in ``distrusted`` (:func:`distrusted_walkers`), however
        far it ran.
    """
    if policy not in START_POLICIES:
        raise ValueError(f"unknown start policy {policy!r} (one of {', '.join(START_POLICIES)})")
    starts = []
    for w in walkers:
        if previous is None or policy == "initial":
            starts.append((fresh(initial[w.structure % len(initial)]), f"initial:{w.structure}"))
            continue
        if w.index not in previous:
            raise ValueError(f"no previous state of walker {w.index}: was the sampling grid "
                             "changed mid-campaign?")
        state, record = previous[w.index]
        ran = record.get("last_segment_steps", record.get("steps", steps))
        if policy == "continue" or (w.index not in distrusted and (
                record.get("stop_reason") == "completed" or ran >= min_run_fraction * steps)):
            starts.append((state, "continue"))
            continue
        starts.append(restart_point(trusted, np.random.default_rng([seed, w.index])))
    return starts


def restart_point(trusted: list[Atoms], rng) -> tuple[Atoms, str]:
    """A trusted frame drawn with ``rng``, cleaned by :func:`fresh`, and a note naming it."""
    pick = trusted[int(rng.integers(len(trusted)))]
    return fresh(pick), f"restart:{pick.info.get('origin', 'initial')}"


@dataclass
class WalkerResult:
    frames: list[Atoms]  # saved frames, each with info[DEVIATION_KEY]
    state: Atoms  # last trusted state, to continue from next iteration
    steps_done: int
    stop_reason: str  # "completed", "deviation", "non_finite"


@dataclass
class Exploration:
    frames: list[Atoms]
    state: Atoms  # last trusted state of the last segment
    record: dict  # what the walker did this iteration (walkers_{p}.json)


def explore(start: Atoms, calc, walker: Walker, *, start_note: str, steps: int,
            trusted: list[Atoms], max_restarts: int, seed: int, bias: float = 0.0,
            bias_wall: float = 0.0, wall_pairs: np.ndarray | None = None,
            progress: Callable[[str], None] = log.info, **md) -> Exploration:
    """Spend a walker's ``steps`` for this iteration, restarting it when it stops early.

    A walker that stops (deviation past trust_hi, non-finite forces) before its
    steps are spent restarts, at most ``max_restarts`` times, from a trusted
    frame drawn with a seeded generator (``trusted``: initial structures and
    labelled data) with fresh velocities, for the steps it has left. Each
    segment is recorded; frames are numbered across segments.
    ``bias`` > 0 drives the walker towards the committee's disagreement
    (:class:`UncertaintyBias` of that strength, over all its segments), off
    while two atoms are closer than ``bias_wall`` × the closest distance of
    their elements in ``trusted`` (``wall_pairs``: :func:`closest_pairs` of
    ``trusted`` when already computed).
    """
    rng = np.random.default_rng([seed, 1])
    if bias:
        if bias_wall and wall_pairs is None:
            wall_pairs = closest_pairs(trusted)
        calc = UncertaintyBias(calc, bias, wall=bias_wall, closest=wall_pairs)
    frames: list[Atoms] = []
    segments = []
    done, note, current = 0, start_note, start
    for segment in range(max_restarts + 1):
        res = run_walker(current, calc, walker, steps=steps - done, seed=seed + 7919 * segment,
                         first_step=done, progress=progress, **md)
        frames += res.frames
        segments.append({"start": note, "steps": res.steps_done, "stop_reason": res.stop_reason})
        done += res.steps_done + (res.stop_reason != "completed")  # a stop costs a step
        if res.stop_reason == "completed" or done >= steps or segment == max_restarts:
            break
        current, note = restart_point(trusted, rng)
    devs = [a.info[DEVIATION_KEY] for a in frames if np.isfinite(a.info.get(DEVIATION_KEY, np.nan))]
    record = {
        "walker": walker.index, "temperature": walker.temperature, "pressure": walker.pressure,
        "start": start_note, "steps": sum(s["steps"] for s in segments),
        "stop_reason": segments[-1]["stop_reason"],
        "stopped_early": any(s["stop_reason"] != "completed" for s in segments),
        "restarts": len(segments) - 1, "last_segment_steps": segments[-1]["steps"],
        "segments": segments, "n_frames": len(frames), "max_deviation": max(devs, default=None),
    }
    if bias:
        record["bias_tau"] = calc.tau  # eV: the adapted τ of the last step
        if bias_wall:  # the share of steps the wall held the bias off
            record["bias_off"] = calc.steps_off / calc.steps if calc.steps else None
    return Exploration(frames, res.state, record)


def explore_pack(walkers: list[Walker], starts: list[tuple[Atoms, str]], calc, *,
                 seeds: list[int], batched: bool = True, batch_size: int = 16,
                 describe: Callable[[Atoms], np.ndarray] | None = None,
                 **kwargs) -> list[Exploration]:
    """:func:`explore` every walker of a pack with the committee ``calc`` (a
    mace-torch calculator); ``kwargs`` are explore's (steps, trusted, ...).

    ``batched``: all walkers advance together and the committee evaluates
    every running walker in one forward pass per member (at most
    ``batch_size`` walkers each, :mod:`alflow.batching`); otherwise one
    walker after the other, one call per walker and step. Both give the
    same trajectories up to floating-point round-off. Each record gets
    ``seconds``, the walker's wall time (overlapping when batched).
    """
    def task(walker, start, note, seed):
        def run(walker_calc):
            t0 = time.time()
            out = explore(start, walker_calc, walker, start_note=note, seed=seed,
                          describe=describe, **kwargs)
            out.record["seconds"] = round(time.time() - t0, 2)
            return out
        return run

    if kwargs.get("bias") and kwargs.get("bias_wall"):  # once per pack, not per walker
        kwargs["wall_pairs"] = closest_pairs(kwargs["trusted"])
    tasks = [task(w, start, note, seed) for w, (start, note), seed in zip(walkers, starts, seeds)]
    if not batched:
        return [run(calc) for run in tasks]
    from .batching import CommitteeBatch, locked, run_batched

    if describe is not None:  # descriptors use the shared calculator: one thread at a time
        describe = locked(describe)
    evaluate = CommitteeBatch(calc, batch_size)
    out = run_batched(tasks, evaluate)
    log.info("pack of %d walkers: %d forward passes per committee member (batch size %d, %d "
             "structures evaluated alone after non-finite forces)", len(tasks),
             evaluate.forward_passes, evaluate.batch_size, evaluate.isolated)
    return out


def run_walker(atoms: Atoms, calc, walker: Walker, *, steps: int, timestep_fs: float,
               save_every: int, friction: float, trust_hi: float, seed: int,
               describe: Callable[[Atoms], np.ndarray] | None = None, first_step: int = 0,
               progress: Callable[[str], None] = log.info) -> WalkerResult:
    """Run one walker and record frames with their committee deviation.

    Saved frames carry the deviation, the committee-mean forces and, when
    ``describe`` is given, its descriptor of the structure. The walker stops
    early when the deviation reaches ``trust_hi`` or the forces become
    non-finite; that last frame is kept in ``frames`` (it counts as failed in
    the selection statistics) but the state to continue from is the last
    frame below ``trust_hi``. Frames are numbered from ``first_step``.
    """
    atoms = atoms.copy()
    atoms.calc = calc
    rng = np.random.default_rng(seed)
    if not np.any(atoms.get_momenta()):
        thermalize_momenta(atoms, walker.temperature, rng=rng)
        Stationary(atoms)
    dyn = langevin_integrator(atoms, walker, timestep_fs, friction, rng)
    frames: list[Atoms] = []
    state = _snapshot(atoms, walker, first_step, None)
    reason = "completed"
    step = 0
    for step, _ in enumerate(dyn.irun(steps)):
        dev = committee_deviation(calc)
        trusted = np.isfinite(dev) and dev < trust_hi
        if step % save_every == 0 or not trusted:
            frame = _snapshot(atoms, walker, first_step + step, dev)
            forces = calc.results.get(UNBIASED_FORCES_KEY, calc.results.get("forces"))
            if forces is not None:
                frame.arrays[COMMITTEE_FORCES_KEY] = np.array(forces, dtype=float)
            _record_energies(frame, calc.results)
            if describe is not None and np.isfinite(dev):
                frame.info[DESCRIPTOR_KEY] = describe(atoms)
            frames.append(frame)
        if not trusted:
            reason = "deviation" if np.isfinite(dev) else "non_finite"
            frames[-1].info[STOP_KEY] = reason  # where the committee broke down
            break
        state = _snapshot(atoms, walker, first_step + step, dev)
    progress(f"walker {walker.index} (T={walker.temperature:g} K"
             f"{'' if walker.pressure is None else f', P={walker.pressure:g} GPa'}): "
             f"{step} steps, {len(frames)} frames, stop: {reason}")
    return WalkerResult(frames, state, step, reason)


def _record_energies(frame: Atoms, results: dict) -> None:
    """The committee's energy (mean, and per member) on a saved frame, when
    finite: the audit compares it with the label (the bias leaves it alone)."""
    energy = results.get("energy")
    if energy is not None and np.isfinite(energy):
        frame.info[COMMITTEE_ENERGY_KEY] = float(energy)
        members = np.ravel(results.get("energy_comm", [energy])).astype(float)
        if np.all(np.isfinite(members)):
            frame.info[MEMBER_ENERGIES_KEY] = members


def langevin_integrator(atoms: Atoms, walker: Walker, timestep_fs: float, friction: float, rng):
    """The ASE integrator of a walker's ensemble, with its noise from ``rng``:
    Langevin NVT (``friction`` in 1/fs, centre of mass fixed) when the walker
    has no pressure, else Langevin BAOAB NPT at ``walker.pressure`` (GPa,
    hydrostatic; thermostat time 1/``friction``, barostat time 20x that)."""
    dt = timestep_fs * units.fs
    if walker.pressure is None:
        atoms.set_constraint(FixCom())  # ASE's recommended way to keep the centre of mass
        return Langevin(atoms, timestep=dt, temperature_K=walker.temperature,
                        friction=friction / units.fs, fixcm=False, rng=rng)
    t_tau = 1.0 / friction * units.fs
    return LangevinBAOAB(atoms, timestep=dt, temperature_K=walker.temperature,
                         externalstress=-walker.pressure * units.GPa, hydrostatic=True,
                         T_tau=t_tau, P_tau=20 * t_tau, rng=rng)


def _snapshot(atoms: Atoms, walker: Walker, step: int, dev: float | None) -> Atoms:
    snap = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc,
                 momenta=atoms.get_momenta())
    snap.info.update(walker=walker.index, temperature=walker.temperature, step=step)
    if walker.pressure is not None:
        snap.info["pressure"] = walker.pressure
    if dev is not None:
        snap.info[DEVIATION_KEY] = dev
    return snap
