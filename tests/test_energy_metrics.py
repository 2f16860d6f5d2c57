"""Energy errors split into a constant offset and the rest, on hand-made
predictions whose errors are known exactly, with one and two compositions."""
import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from alflow import (COMMITTEE_ENERGY_KEY, COMMITTEE_FORCES_KEY, DEVIATION_KEY, ENERGY_KEY,
                    FORCES_KEY, MEMBER_ENERGIES_KEY)
from alflow.calibration import audit_energy, frame_errors, pooled_audit, stop_decision
from alflow.metrics import (campaign_row, composition, energy_errors, energy_report, evaluate,
                            offset_dominates)
from alflow.validation import card_markdown


def test_one_composition_offset_and_the_rest():
    # errors (eV/atom) = 0.05 offset + ±0.01
    m = energy_errors([0.06, 0.04, 0.06, 0.04], ["H2O"] * 4)
    assert m["energy_offset_meV_per_atom"] == pytest.approx(50)
    assert m["energy_offset_free_rmse_meV_per_atom"] == pytest.approx(10)
    assert m["energy_rmse_meV_per_atom"] == pytest.approx(np.sqrt((60**2 + 40**2) / 2))
    assert m["energy_by_composition"] == {"H2O": {"n": 4, "offset": pytest.approx(50),
                                                  "offset_free_rmse": pytest.approx(10)}}
    assert offset_dominates(m)
    # no offset: the RMSE is all offset-free
    m = energy_errors([0.01, -0.01], ["Cu", "Cu"])
    assert m["energy_offset_meV_per_atom"] == pytest.approx(0, abs=1e-9)
    assert m["energy_offset_free_rmse_meV_per_atom"] == pytest.approx(m["energy_rmse_meV_per_atom"])
    assert not offset_dominates(m)


def test_two_compositions_each_lose_their_own_offset():
    # Cu: -30 ± 5 meV/atom; AuCu3: +70 ± 10 meV/atom
    errors = [-0.035, -0.025, 0.08, 0.06, 0.08, 0.06]
    comps = ["Cu", "Cu", "AuCu3", "AuCu3", "AuCu3", "AuCu3"]
    m = energy_errors(errors, comps)
    by = m["energy_by_composition"]
    assert by["Cu"]["offset"] == pytest.approx(-30) and by["Cu"]["n"] == 2
    assert by["AuCu3"]["offset"] == pytest.approx(70) and by["AuCu3"]["n"] == 4
    assert by["Cu"]["offset_free_rmse"] == pytest.approx(5)
    assert by["AuCu3"]["offset_free_rmse"] == pytest.approx(10)
    # the offset-free RMSE subtracts each composition's own offset, not the mean one
    assert m["energy_offset_free_rmse_meV_per_atom"] == pytest.approx(
        np.sqrt((2 * 5**2 + 4 * 10**2) / 6))
    assert m["energy_offset_meV_per_atom"] == pytest.approx((2 * -30 + 4 * 70) / 6)
    with pytest.raises(ValueError, match="compositions"):
        energy_errors([0.1], ["Cu", "Cu"])


def test_composition_is_the_reduced_formula():
    assert composition(Atoms("H16O8")) == composition(Atoms("H2O")) == "H2O"
    assert composition(Atoms("Cu12Au4")) == "AuCu3"


class Shifted(Calculator):
    """A two-member 'committee' whose energies are the reference plus a known
    per-atom shift per member, and exact forces."""
    implemented_properties = ["energy", "forces"]

    def __init__(self, shifts):
        super().__init__()
        self.shifts = shifts

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        n, ref = len(self.atoms), self.atoms.info[ENERGY_KEY]
        shift = self.shifts[composition(self.atoms)]
        members = np.array([ref + n * s for s in shift])
        forces = self.atoms.arrays[FORCES_KEY]
        self.results = {"energy": members.mean(), "energy_comm": members, "forces": forces,
                        "forces_comm": np.array([forces, forces])}


def labelled(symbols, energy, n_copies=1):
    a = Atoms(symbols, cell=[20, 20, 20], pbc=True)
    a.positions = np.arange(3 * len(a)).reshape(-1, 3) * 1.5
    a = a * (n_copies, 1, 1)
    a.info[ENERGY_KEY] = energy
    a.arrays[FORCES_KEY] = np.zeros((len(a), 3))
    return a


def test_evaluate_reports_committee_and_members_per_composition():
    frames = [labelled("Cu", -3.0, 2), labelled("Cu", -3.2, 4), labelled("AuCu3", -12.0)]
    calc = Shifted({"Cu": [0.010, 0.030], "AuCu3": [-0.050, -0.070]})
    m, table = evaluate(calc, frames, return_predictions=True)
    assert m["energy_by_composition"]["Cu"]["offset"] == pytest.approx(20)
    assert m["energy_by_composition"]["AuCu3"]["offset"] == pytest.approx(-60)
    assert m["energy_offset_free_rmse_meV_per_atom"] == pytest.approx(0, abs=1e-6)
    assert m["member_energy_offset_meV_per_atom"] == pytest.approx(
        [(2 * 10 - 50) / 3, (2 * 30 - 70) / 3])
    assert m["member_energy_offset_free_rmse_meV_per_atom"] == pytest.approx([0, 0], abs=1e-6)
    assert m["force_rmse_meV_per_A"] == pytest.approx(0)
    assert set(table["composition"]) == {"Cu", "AuCu3"}


def sampled(energy_shift, member_shifts, selected_by="audit", n=2):
    a = labelled("H" * n, -1.0 * n)
    a.arrays[COMMITTEE_FORCES_KEY] = a.arrays[FORCES_KEY] + 0.1
    a.info.update({DEVIATION_KEY: 0.05, "selected_by": selected_by, "walker": 0,
                   COMMITTEE_ENERGY_KEY: -1.0 * n + n * energy_shift,
                   MEMBER_ENERGIES_KEY: np.array([-1.0 * n + n * s for s in member_shifts])})
    return a


def test_audit_energy_from_the_committee_energy_on_audit_frames():
    frames = [sampled(0.02, [0.01, 0.03]), sampled(0.04, [0.03, 0.05]),
              sampled(0.5, [0.5, 0.5], selected_by="balanced")]  # not an audit frame
    table = frame_errors(frames).assign(iteration=1)
    assert list(table["energy_error"]) == pytest.approx([0.02, 0.04, 0.5])
    audit = pooled_audit([table], seed=0)
    energy = audit["energy"]
    assert energy["n_frames"] == 2
    assert energy["offset"] == pytest.approx(30) and energy["offset_free_rmse"] == pytest.approx(10)
    assert energy["rmse"] == pytest.approx(np.sqrt((20**2 + 40**2) / 2))
    assert energy["lower"] <= energy["rmse"] <= energy["upper"] <= 40 + 1e-9
    assert energy["member_offset"] == pytest.approx([20, 40])
    # the table survives a CSV round trip (as the calibrate rule pools it)
    again = audit_energy(pd.read_csv(pd.io.common.StringIO(table.to_csv(index=False)))
                         .query("selected_by == 'audit'"))
    assert again["rmse"] == pytest.approx(energy["rmse"]) and again["member_rmse"]
    # frames sampled before the committee energy was recorded count for forces only
    old = sampled(0.02, [0.01, 0.03])
    del old.info[COMMITTEE_ENERGY_KEY]
    assert pooled_audit([frame_errors([old]).assign(iteration=1)])["energy"]["rmse"] is None


def test_stop_rule_with_an_energy_target():
    audit = {"upper": 50.0, "energy": {"upper": 12.0}}
    assert stop_decision(audit, 1.0, 60.0, 0.75, energy_target=15.0)["converged"]
    held = stop_decision(audit, 1.0, 60.0, 0.75, energy_target=10.0)
    assert not held["converged"] and "energy upper bound 12 meV/atom above the target 10" in \
        held["reason"]
    # an energy target alone decides too
    assert stop_decision(audit, 1.0, None, 0.75, energy_target=15.0)["converged"]
    none = stop_decision({"upper": 50.0, "energy": {"upper": None}}, 1.0, 60.0, 0.75,
                         energy_target=15.0)
    assert not none["converged"] and "committee energy" in none["reason"]


def test_campaign_row_and_card_show_the_offset_apart():
    metrics = {"energy_rmse_meV_per_atom": 50.0, "energy_offset_meV_per_atom": 49.0,
               "energy_offset_free_rmse_meV_per_atom": 9.9, "force_rmse_meV_per_A": 100.0,
               "energy_by_composition": {"H2O": {"n": 3}},
               "train": {"energy_rmse_meV_per_atom": 40.0, "energy_offset_meV_per_atom": 39.0,
                         "energy_offset_free_rmse_meV_per_atom": 8.9,
                         "force_rmse_meV_per_A": 80.0}}
    audit = {"rmse": 90.0, "upper": 110.0, "energy": {"rmse": 45.0, "upper": 60.0,
                                                      "offset": 44.0, "offset_free_rmse": 9.0}}
    row = campaign_row(2, {"n_train": 10}, metrics, audit=audit)
    assert row["energy_offset_meV_per_atom"] == 49.0 and row["train_energy_offset_meV_per_atom"] == 39.0
    assert row["audit_energy_upper"] == 60.0 and "energy_by_composition" not in row
    report = energy_report(metrics, metrics["train"], audit)
    assert report["offset_dominates"] and report["audit"]["energy_offset_meV_per_atom"] == 44.0
    card = {"model": {"file": "model.model", "dtype": "float32", "which": "member 0",
                      "lammps": {"made": False, "error": ["x"]}},
            "level_of_theory": {"kind": "ase"}, "sampled_conditions": {
                "temperatures_K": [300], "pressures_GPa": None},
            "training_set": {"n_train": 10, "n_valid": 1, "elements": ["H", "O"]},
            "test_set": {"n_structures": 3, **metrics}, "audit": None, "energy": report,
            "calibration": {"scale": 2.0, "spearman": 0.5}, "converged": True, "stop_reason": "x",
            "validation": {"stable": True, "steps": 10, "conditions": {}}, "software": {}}
    text = card_markdown(card)
    assert "test RMSE 50 (offset 49, offset-free RMSE 9.9)" in text
    assert "mostly an offset" in text
    report["offset_dominates"] = False
    assert "mostly an offset" not in card_markdown(card)
