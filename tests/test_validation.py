"""Production validation: failure detection, RDFs against the reference, the model card."""
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from alflow import DEVIATION_KEY
from alflow.cp2k import load_template
from alflow.sampling import STOP_KEY
from alflow.validation import (OVERLAP, compare_rdfs, conditions, density, deviation_shares,
                               first_failure, fit_cell, instability_warning,
                               level_of_theory_summary, rdf, rdf_distance,
                               probe, run_validation, stable_frames, verdict)


def cu_frames(n=6, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.61 * scale, cubic=True).repeat(2)
        atoms.positions += rng.normal(0, 0.08, atoms.positions.shape)
        atoms.info.update(step=10 * k, **{DEVIATION_KEY: 0.01 * (k + 1)})
        frames.append(atoms)
    return frames


def test_conditions_add_one_hotter_than_sampled():
    out = conditions([300, 600], None, 1.25)
    assert [(c["temperature"], c["kind"]) for c in out] == [(300, "sampled"), (600, "sampled"),
                                                            (750, "hot")]
    npt = conditions([300], [0.0, 1.0], 1.25)
    assert [(c["temperature"], c["pressure"]) for c in npt] == [(300, 0.0), (300, 1.0), (375, 0.0)]


def test_first_failure_names_the_first_reason():
    frames = cu_frames()
    assert first_failure(frames, "completed", 60, 0.6) == (None, "completed")
    frames[-1].info[STOP_KEY] = "deviation"  # the MD stopped at the cap
    assert first_failure(frames, "deviation", 55, 0.6) == (55, "deviation")
    frames[2].positions[1] = frames[2].positions[0] + [0.3, 0, 0]  # two atoms on top of each other
    assert first_failure(frames, "deviation", 55, 0.6) == (20, OVERLAP)
    assert [a.info["step"] for a in stable_frames(frames, 20)] == [0, 10]
    assert verdict([{"failed_at_step": None}, {"failed_at_step": 20}]) == {"stable": False,
                                                                           "survival": 0.5}


def test_instability_warning_names_the_runs_that_ended():
    def summary(*failed_at):
        runs = [{"condition": "300 K", "seed": k, "failed_at_step": f,
                 "ended_by": "completed" if f is None else "deviation"}
                for k, f in enumerate(failed_at)]
        return {"steps": 300, **verdict(runs),
                "conditions": {"300 K": {"stability": {**verdict(runs), "runs": runs}}}}

    assert instability_warning(summary(None, None), "v.json") is None
    text = instability_warning(summary(None, 161), "v.json")
    assert "NOT stable" in text and "1 of 2 runs of 300 steps" in text
    assert "300 K: deviation at step 161" in text and text.endswith("v.json")


def test_rdf_distance_is_zero_for_identical_frames_and_grows_with_a_shift():
    frames = cu_frames()
    r, g = rdf(frames, ("Cu", "Cu"), 6.0)  # beyond half the 7.2 Å cell: repeated to fit
    assert len(fit_cell(frames[0], 6.0)) == 8 * len(frames[0])
    assert r[np.argmax(g)] == pytest.approx(3.61 / np.sqrt(2), abs=0.15)  # nearest neighbours
    assert g[r > 5.0].mean() == pytest.approx(1.0, abs=0.35)  # g -> 1 far away
    same = compare_rdfs(frames, [a.copy() for a in frames], 6.0)
    assert same["Cu-Cu"]["distance"] == pytest.approx(0.0, abs=1e-12)
    small = compare_rdfs(cu_frames(scale=1.02), frames, 6.0)["Cu-Cu"]["distance"]
    large = compare_rdfs(cu_frames(scale=1.06), frames, 6.0)["Cu-Cu"]["distance"]
    assert 0 < small < large
    assert rdf_distance([0, 1], [0, 1], [0, 3]) == pytest.approx(2.0)
    assert compare_rdfs([], frames, 6.0) == {}


def test_density_and_deviation_shares():
    frames = cu_frames(n=4)
    assert density(frames) == pytest.approx(8.93, rel=0.02)  # copper
    shares = deviation_shares(frames, 0.015, 0.035)  # deviations 0.01 .. 0.04
    assert shares == {"accurate": 0.25, "candidate": 0.5, "failed": 0.25, "n_frames": 4}


def test_level_of_theory_for_the_model_card():
    pbe = level_of_theory_summary({"kind": "cp2k"}, load_template("config/cp2k/water_pbe.inp").tree)
    assert pbe["xc_functional"] == "PBE" and pbe["basis_sets"]["O"] == ["DZVP-MOLOPT-SR-GTH"]
    xtb = level_of_theory_summary({"kind": "cp2k"}, load_template("config/cp2k/water_xtb.inp").tree)
    assert xtb["method"] == "xtb" and "xc_functional" not in xtb
    emt = level_of_theory_summary({"kind": "ase", "ase": {"calculator": "ase.calculators.emt.EMT"}},
                                  None)
    assert emt == {"kind": "ase", "calculator": "ase.calculators.emt.EMT"}


class Flipped(Calculator):
    """EMT with its forces and energy reversed: a deliberately broken potential
    (atoms attract at short range and collapse). A stand-in for a badly
    trained model that needs no training here."""
    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        probe = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        probe.calc = EMT()
        self.results = {"energy": -probe.get_potential_energy(), "forces": -probe.get_forces()}


@pytest.mark.parametrize("broken", [False, True])
def test_production_md_finds_a_stable_potential_stable_and_a_broken_one_broken(broken):
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    reference = cu_frames(n=4)
    for a in reference:
        a.info["temperature"] = 600.0
    out = run_validation(Flipped() if broken else EMT(), [cu], conditions([600], None, 1.25),
                         seeds=2, steps=60, seed=0, lo=0.05, hi=1.0, min_distance_fraction=0.6,
                         reference=reference, rdf_rmax=5.0, timestep_fs=2.0, save_every=5,
                         friction=0.02, batched=False, progress=lambda s: None)
    summary = out["summary"]
    assert list(summary["conditions"]) == ["600 K", "750 K (hot)"]
    assert len(out["runs"]) == 4 and summary["steps"] == 60
    if not broken:  # EMT is the reference itself: stable everywhere
        assert summary["stable"] and summary["survival"] == 1.0
        assert all(r["ended_by"] == "completed" and r["time_to_failure_ps"] is None
                   for r in out["runs"])
        assert summary["conditions"]["600 K"]["rdf"]["Cu-Cu"]["distance"] >= 0
    else:
        assert not summary["stable"] and summary["survival"] == 0.0
        assert all(r["ended_by"] in (OVERLAP, "non_finite") and r["failed_at_step"] < 60
                   for r in out["runs"])
    assert summary["conditions"]["750 K (hot)"]["rdf"] == {}  # no reference MD that hot


@pytest.mark.parametrize("broken", [False, True])
def test_probe_runs_the_sampled_conditions_and_names_where_runs_ended(broken):
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    out = probe(Flipped() if broken else EMT(), [cu], [300, 600], None, seeds=2, steps=40,
                seed=0, hi=1.0, min_distance_fraction=0.6, timestep_fs=2.0, friction=0.02,
                save_every=5, batched=False, progress=lambda s: None)
    assert out["steps"] == 40 and len(out["runs"]) == 4  # 2 sampled temperatures x 2, no hot one
    assert {r["condition"] for r in out["runs"]} == {"300 K", "600 K"}
    assert out["stable"] is (not broken)
    assert all((r["failed_at_step"] is None) is (not broken) for r in out["runs"])
