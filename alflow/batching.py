"""Batched committee evaluation for the walkers of a pack.

Every walker keeps its own ASE integrator (the same Langevin/NPT code, seeds
and physics as a walker run on its own) and runs in its own thread. Its
calculator, :class:`BatchedCalculator`, hands the structure to a shared
:class:`Batcher` and waits. Once every walker that is still running is
waiting, the batcher evaluates all of them together: per committee member one
forward pass over a batch of graphs (at most ``batch_size`` structures each),
and gives every walker its own energy, forces, stress and per-member forces
(``forces_comm``), so the committee deviation is computed per walker exactly
as before. A walker that stops or finishes leaves the batch; the others go on.

The threads only take turns: while the batch is evaluated (torch releases the
GIL) every walker waits, and the integrator steps run between evaluations.
What is batched is the expensive part, the model.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

T = TypeVar("T")


class CommitteeBatch:
    """Evaluates a mace-torch committee (a loaded ``MACECalculator``) on many
    structures at once, with mace-torch's own graph construction and models."""

    def __init__(self, calc, batch_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.calc = calc
        self.batch_size = batch_size
        self.forward_passes = 0  # forward passes per member, for the log
        self.isolated = 0  # structures re-evaluated alone because a batch had non-finite forces

    def __call__(self, structures: Sequence[Atoms]) -> list[dict]:
        """Results per structure, in order; chunks of ``batch_size``. On a CUDA
        out-of-memory error the batch size is halved and the chunk retried. A
        chunk with non-finite forces is evaluated again one structure at a time."""
        import torch

        out: list[dict] = []
        start = 0
        while start < len(structures):
            chunk = structures[start:start + self.batch_size]
            try:
                results = self._forward(chunk)
                if len(chunk) > 1 and not all(np.isfinite(r["forces"]).all() for r in results):
                    # One structure's NaNs spread to every structure's forces in the
                    # backward pass (measured with mace-torch 0.3.16): evaluate this
                    # chunk one by one so only the broken walker sees them.
                    self.isolated += len(chunk)
                    results = [self._forward([atoms])[0] for atoms in chunk]
                out += results
            except torch.cuda.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                torch.cuda.empty_cache()
                self.batch_size = max(1, self.batch_size // 2)
                continue
            start += len(chunk)
        return out

    def _forward(self, structures: Sequence[Atoms]) -> list[dict]:
        from mace import data as mace_data
        from mace.tools import torch_geometric, torch_tools

        calc = self.calc
        keyspec = mace_data.KeySpecification(
            info_keys=calc.info_keys, arrays_keys={**calc.arrays_keys, calc.charges_key: "charges"})
        with torch_tools.default_dtype(calc.default_dtype):
            graphs = [mace_data.AtomicData.from_config(
                mace_data.config_from_atoms(a, key_specification=keyspec, head_name=calc.head),
                z_table=calc.z_table, cutoff=calc.r_max, heads=calc.available_heads)
                for a in structures]
        batch = torch_geometric.Batch.from_data_list(graphs).to(calc.device)
        energy, forces, stress = [], [], []
        for model in calc.models:
            member = batch.clone()
            dtype = next(model.parameters()).dtype
            for key in member.keys:
                value = member[key]
                if hasattr(value, "is_floating_point") and value.is_floating_point():
                    member[key] = value.to(dtype=dtype)
            res = model(member.to_dict(), compute_stress=True, training=False)
            energy.append(res["energy"].detach())
            forces.append(res["forces"].detach())
            stress.append(res["stress"].detach())
        self.forward_passes += 1
        import torch

        e_unit = calc.energy_units_to_eV
        f_unit = e_unit / calc.length_units_to_A
        s_unit = e_unit / calc.length_units_to_A ** 3
        energy = torch.stack(energy).cpu().numpy().astype(float) * e_unit  # (members, graphs)
        forces = torch.stack(forces).cpu().numpy().astype(float) * f_unit  # (members, atoms, 3)
        stress = torch.stack(stress).cpu().numpy().astype(float) * s_unit  # (members, graphs, 3, 3)
        ptr = batch.ptr.cpu().numpy()
        results = []
        for g in range(len(structures)):
            f_comm = forces[:, ptr[g]:ptr[g + 1]]
            e = float(energy[:, g].mean())
            results.append({
                "energy": e, "free_energy": e, "forces": f_comm.mean(axis=0),
                "stress": full_3x3_to_voigt_6_stress(stress[:, g].mean(axis=0)),
                "energy_comm": energy[:, g].copy(), "forces_comm": f_comm.copy(),
            })
        return results


class _Request:
    __slots__ = ("atoms", "result", "error")

    def __init__(self, atoms: Atoms) -> None:
        self.atoms, self.result, self.error = atoms, None, None


class Batcher:
    """Collects one structure from every running walker, then evaluates them
    together with ``evaluate`` (structures -> results). ``n_walkers`` walkers
    take part; each calls :meth:`leave` when it is done (also on error), so
    the rest never wait for it."""

    def __init__(self, evaluate: Callable[[list[Atoms]], list[dict]], n_walkers: int) -> None:
        self._evaluate = evaluate
        self._cond = threading.Condition()
        self._active = n_walkers
        self._pending: list[_Request] = []
        self.evaluations = 0  # batched calls
        self.structures = 0  # structures evaluated

    def submit(self, atoms: Atoms) -> dict:
        request = _Request(atoms)
        with self._cond:
            self._pending.append(request)
            self._run_if_all_waiting()
            while request.result is None and request.error is None:
                self._cond.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def leave(self) -> None:
        with self._cond:
            self._active -= 1
            self._run_if_all_waiting()

    def _run_if_all_waiting(self) -> None:
        # Holding the lock is fine: every walker still running is waiting.
        if not self._pending or len(self._pending) < self._active:
            return
        batch, self._pending = self._pending, []
        try:
            results = self._evaluate([r.atoms for r in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batched evaluation returned {len(results)} results "
                                   f"for {len(batch)} structures")
            for request, result in zip(batch, results):
                request.result = result
        except BaseException as exc:  # every waiting walker gets the error, none hangs
            for request in batch:
                request.error = exc
        self.evaluations += 1
        self.structures += len(batch)
        self._cond.notify_all()


class BatchedCalculator(Calculator):
    """One walker's ASE calculator: its structure is evaluated in the shared batch."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, batcher: Batcher) -> None:
        super().__init__()
        self.batcher = batcher

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = dict(self.batcher.submit(self.atoms))


def run_batched(tasks: Sequence[Callable[[Calculator], T]],
                evaluate: Callable[[list[Atoms]], list[dict]]) -> list[T]:
    """Run every task (a walker: ``task(calculator) -> result``) in its own
    thread, all evaluated through one :class:`Batcher`; results in task order.
    A task that raises does not stop the others; its error is raised at the end."""
    batcher = Batcher(evaluate, len(tasks))

    def run(task):
        try:
            return task(BatchedCalculator(batcher))
        finally:
            batcher.leave()

    if not tasks:
        return []
    with ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="walker") as pool:
        futures = [pool.submit(run, task) for task in tasks]
        return [f.result() for f in futures]


def locked(func: Callable[..., T]) -> Callable[..., T]:
    """``func`` callable from several walker threads, one call at a time."""
    lock = threading.Lock()

    def call(*args, **kwargs):
        with lock:
            return func(*args, **kwargs)

    return call
