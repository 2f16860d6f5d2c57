import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import write

from alflow.structures import StructureError, labelled_frames, load_structures, perturb


def test_load_reports_file_problems(tmp_path):
    with pytest.raises(StructureError, match="does not exist"):
        load_structures(tmp_path / "missing.xyz")
    bad = tmp_path / "bad.xyz"
    bad.write_text("3\nnot an xyz file\nH 0 0\n")
    with pytest.raises(StructureError, match="bad.xyz"):
        load_structures(bad)
    overlap = tmp_path / "overlap.xyz"
    write(overlap, Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.1]]))
    with pytest.raises(StructureError, match="overlapping"):
        load_structures(overlap)


def test_overlap_across_the_periodic_boundary_is_found(tmp_path):
    path = tmp_path / "periodic.xyz"
    pair = Atoms("Cu2", positions=[[0.1, 2, 2], [3.9, 2, 2]], cell=[4, 4, 4], pbc=True)
    write(path, pair)  # 3.8 Å apart in the cell, 0.2 Å through the boundary
    with pytest.raises(StructureError, match="atoms 0 and 1 are 0.200 Å apart"):
        load_structures(path)
    pair.pbc = False
    write(path, pair)
    assert len(load_structures(path)) == 1


def test_labelled_dataset_needs_labels(tmp_path):
    path = tmp_path / "unlabelled.xyz"
    write(path, bulk("Cu", cubic=True))
    with pytest.raises(StructureError, match="REF_energy"):
        labelled_frames(path)


def test_perturb_is_reproducible_and_bounded():
    base = [bulk("Cu", "fcc", a=3.6, cubic=True)]
    a = perturb(base, 5, rattle=0.05, strain=0.02, seed=3, tag="b")
    b = perturb(base, 5, rattle=0.05, strain=0.02, seed=3, tag="b")
    assert all(np.allclose(x.positions, y.positions) for x, y in zip(a, b))
    assert [x.info["origin"] for x in a] == [f"b:{k}" for k in range(5)]
    for x in a:
        assert np.abs(x.cell.lengths() / 3.6 - 1).max() <= 0.02 * 1.8  # sym. strain, |eps| <= 0.02
        assert not np.allclose(x.positions, base[0].positions)
    c = perturb(base, 5, rattle=0.05, strain=0.02, seed=4, tag="b")
    assert not np.allclose(a[0].positions, c[0].positions)
