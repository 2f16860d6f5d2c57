"""Initial structures: checking them, and perturbing them for the bootstrap
and the default held-out test set."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read
from ase.neighborlist import neighbor_list

from . import ENERGY_KEY, FORCES_KEY


class StructureError(ValueError):
    """A structure file that cannot be used; the message names the file."""


def load_structures(path: str | os.PathLike) -> list[Atoms]:
    """Read every frame of a structure file (any format ASE reads) and check it.

    Raises StructureError naming the file when it is missing, unreadable,
    empty, or holds a frame with overlapping atoms or a degenerate cell.
    """
    path = Path(path)
    if not path.is_file():
        raise StructureError(f"structure file {path} does not exist")
    try:
        frames = read(path, index=":")
    except Exception as exc:  # ASE raises many types for bad files
        raise StructureError(f"cannot read structure file {path}: {exc}") from exc
    if not frames:
        raise StructureError(f"structure file {path} holds no structures")
    for k, atoms in enumerate(frames):
        _check_frame(atoms, f"{path} frame {k}")
    return frames


def _check_frame(atoms: Atoms, where: str) -> None:
    if len(atoms) == 0:
        raise StructureError(f"{where}: no atoms")
    if atoms.pbc.any() and abs(atoms.cell.volume) < 1e-6:
        raise StructureError(f"{where}: periodic but the cell has zero volume")
    if len(atoms) > 1:
        # pairs closer than 0.5 Å, periodic images included; the closest is
        # named (lowest indices first among equals)
        i, j, d = neighbor_list("ijd", atoms, 0.5)
        if len(d):
            k = np.lexsort((j, i, d))[0]
            raise StructureError(
                f"{where}: atoms {i[k]} and {j[k]} are {d[k]:.3f} Å apart (overlapping)"
            )


def labelled_frames(path: str | os.PathLike, energy_key: str = ENERGY_KEY,
                    forces_key: str = FORCES_KEY) -> list[Atoms]:
    """Read a user-supplied labelled dataset and check that every frame has labels."""
    frames = load_structures(path)
    for k, atoms in enumerate(frames):
        if energy_key not in atoms.info or forces_key not in atoms.arrays:
            raise StructureError(
                f"{path} frame {k}: needs info['{energy_key}'] and arrays['{forces_key}'] "
                f"(found info keys {sorted(atoms.info)}, arrays {sorted(atoms.arrays)})"
            )
    return frames


def perturb(structures: list[Atoms], n: int, rattle: float, strain: float,
            seed: int, tag: str) -> list[Atoms]:
    """``n`` perturbed copies, cycling over ``structures``.

    Each copy gets a random symmetric cell strain with components uniform in
    [-strain, strain] (periodic structures only) and Gaussian displacements of
    standard deviation ``rattle`` Å. ``info['origin']`` records where it came from.
    """
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        atoms = structures[k % len(structures)].copy()
        atoms.calc = None
        if strain > 0 and atoms.pbc.all():
            eps = rng.uniform(-strain, strain, size=(3, 3))
            eps = 0.5 * (eps + eps.T)
            atoms.set_cell(atoms.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
        atoms.positions += rng.normal(0.0, rattle, size=atoms.positions.shape)
        atoms.info = {"origin": f"{tag}:{k}"}
        for key in list(atoms.arrays):
            if key not in ("numbers", "positions"):
                del atoms.arrays[key]
        out.append(atoms)
    return out


def split_chunks(frames: list, n_chunks: int) -> list[list]:
    """Split into exactly ``n_chunks`` contiguous chunks (trailing ones may be empty)."""
    size = -(-len(frames) // n_chunks) if frames else 0
    return [frames[c * size:(c + 1) * size] for c in range(n_chunks)]
