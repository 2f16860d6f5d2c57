"""The verdict that opens the campaign report (alflow/verdict.py), on small
hand-made results directories, and the stop rule the front page describes."""
import copy
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from docutils.core import publish_parts
from jinja2 import Environment
from snakemake.utils import validate

from alflow.verdict import fmt, front_page, stop_rule, verdict
from conftest import REPO

CONVERGED = "audit upper bound 250 meV/Å <= target 300, survival 1.00"
NOT_YET = "audit upper bound 400 meV/Å above the target 300"


@pytest.fixture(scope="module")
def base_config():
    cfg = yaml.safe_load((REPO / "tests" / "data" / "emt.yaml").read_text())
    cfg["structures"] = str(REPO / "tests" / "data" / "cu_16.xyz")
    validate(cfg, str(REPO / "config" / "schema.yaml"))
    return cfg


@pytest.fixture
def config(base_config, tmp_path):
    cfg = copy.deepcopy(base_config)  # iterations: 2
    cfg["results"] = str(tmp_path / "results")
    cfg["validation"]["enabled"] = True
    return cfg


def row(i, converged=None, reason=None, new=True, **extra):
    """A campaign.csv row; ``new``: with the energy and audit-energy columns."""
    out = {"iteration": i, "n_labels": 10 + 5 * i, "converged": converged, "stop_reason": reason,
           "force_rmse_meV_per_A": 300.0 / (i + 1), "energy_rmse_meV_per_atom": 12.0 / (i + 1),
           "audit_force_rmse": None, "audit_upper": None}
    if new:
        out |= {"energy_offset_meV_per_atom": -8.0 / (i + 1),
                "energy_offset_free_rmse_meV_per_atom": 3.0 / (i + 1),
                "audit_energy_rmse": None, "audit_energy_upper": None}
    return out | extra


def card(converged=True, reason=f"iteration 1: {CONVERGED}", new=True, audit=True, stable=True):
    test = {"n_structures": 8, "energy_rmse_meV_per_atom": 4.0, "force_rmse_meV_per_A": 98.7,
            "stress_rmse_meV_per_A3": 1.0}
    audit_ = {"rmse": 180.4, "lower": 150.2, "upper": 249.6, "level": 0.95, "n_frames": 12,
              "iterations": [2]}
    if new:
        test |= {"energy_offset_meV_per_atom": -3.5, "energy_offset_free_rmse_meV_per_atom": 1.25}
        audit_["energy"] = {"rmse": 5.5, "lower": 4.25, "upper": 7.75, "offset": -2.0,
                            "offset_free_rmse": 1.0, "n_frames": 12}
    return {"converged": converged, "stop_reason": reason, "test_set": test,
            "audit": audit_ if audit else None, "model": {"file": "model.model"},
            "validation": {"stable": stable, "survival": 1.0 if stable else 0.5, "steps": 400,
                           "conditions": {"600 K": {}, "750 K (hot)": {}}}}


def summary(stable=True):
    return {"stable": stable, "survival": 1.0 if stable else 0.5, "steps": 400, "seeds": 2,
            "conditions": {"600 K": {}, "1200 K": {}, "1500 K (hot)": {}}}


def campaign(config, rows, card_=None, summary_=None):
    res = Path(config["results"])
    res.mkdir(parents=True, exist_ok=True)
    if rows is not None:
        pd.DataFrame(rows).to_csv(res / "campaign.csv", index=False)
    if card_ is not None:
        (res / "final").mkdir(exist_ok=True)
        (res / "final" / "model_card.json").write_text(json.dumps(card_))
    if summary_ is not None:
        (res / "validation").mkdir(exist_ok=True)
        (res / "validation" / "summary.json").write_text(json.dumps(summary_))
    return res


def test_converged_campaign(config):
    res = campaign(config, [row(0), row(1, True, CONVERGED, audit_force_rmse=180.0),
                            row(2, True, "converged in an earlier iteration: nothing sampled")],
                   card(), summary())
    lines = verdict(res, config)
    # the first converged row decides, with the campaign table's reason
    assert lines[0] == f"**Converged** in iteration 1 of 2: {CONVERGED}."
    text = "\n".join(lines)
    # the card's figures, not the table's: it is what the user takes away
    assert ("Final committee (iteration 2) on the test set (8 structures): force RMSE 98.7 meV/Å, "
            "energy RMSE 4 meV/atom (constant offset -3.5 meV/atom, offset-free RMSE "
            "1.25 meV/atom)") in text
    assert ("Audit estimate (95 % interval, 12 frames, iteration 2): force RMSE 180 meV/Å "
            "[150, 250]; energy RMSE 5.5 meV/atom [4.25, 7.75]") in text
    assert ("Validation: **stable** (survival 1.00), production MD with the final committee: "
            "2 runs of 400 steps per condition at 600 K, 1200 K, 1500 K (hot)") in text
    assert f"``{res}/final/model.model``" in text and f"``{res}/final/model_card.md``" in text


def test_not_converged_campaign(config):
    res = campaign(config, [row(0), row(1, False, NOT_YET), row(2, False, NOT_YET)],
                   card(converged=False, reason=NOT_YET), summary(stable=False))
    lines = verdict(res, config)
    assert lines[0] == f"**Not converged** after 2 iterations: {NOT_YET}."
    assert any(line.startswith("- Validation: **not stable** (survival 0.50)") for line in lines)
    assert not any("Not finished" in line for line in lines)


def test_unfinished_campaign(config):
    """Iteration 1 of 2 done: how far, the latest figures, no validation yet,
    even with the card and summary a shorter run left in the directory."""
    res = campaign(config, [row(0, audit_force_rmse=210.0, audit_upper=290.0,
                                audit_energy_rmse=6.0, audit_energy_upper=9.5),
                            row(1, False, NOT_YET)], card(), summary())
    lines = verdict(res, config)
    assert lines[0] == f"**Not finished**: iteration 1 of 2 done; not converged yet: {NOT_YET}."
    assert lines[1] == ("- Latest committee (iteration 1) on the test set: force RMSE 150 meV/Å, "
                        "energy RMSE 6 meV/atom (constant offset -4 meV/atom, offset-free RMSE "
                        "1.5 meV/atom).")
    assert lines[2] == ("- Audit estimate for the committee of iteration 0: force RMSE 210 meV/Å, "
                        "upper bound 290 meV/Å; energy RMSE 6 meV/atom, upper bound 9.5 meV/atom.")
    assert lines[3] == "- Validation and final model: not yet (after the last iteration)."
    assert not any("model.model" in line or "stable" in line for line in lines)


def test_unfinished_converged_campaign(config):
    res = campaign(config, [row(0), row(1, True, CONVERGED)])
    assert verdict(res, config)[0] == (
        f"**Not finished**: iteration 1 of 2 done; converged in iteration 1: {CONVERGED}; "
        "the remaining iterations are no-ops.")


def test_running_campaign_without_campaign_csv(config):
    """A running campaign has no campaign.csv yet: the rows come from the
    iterations' own files."""
    res = campaign(config, None)
    it0 = res / "iter_000"
    (it0 / "dataset").mkdir(parents=True)
    (it0 / "dataset" / "summary.json").write_text(json.dumps({"n_train": 10, "n_valid": 2}))
    (it0 / "metrics.json").write_text(json.dumps({"force_rmse_meV_per_A": 321.0,
                                                  "energy_rmse_meV_per_atom": 9.0}))
    (res / "iter_001" / "sample").mkdir(parents=True)  # started, not done
    lines = verdict(res, config)
    assert lines[0] == "**Not finished**: iteration 0 of 2 done (the bootstrap)."
    assert "force RMSE 321 meV/Å, energy RMSE 9 meV/atom." in lines[1]


@pytest.mark.parametrize("make", [False, True])
def test_nothing_done(config, make):
    if make:
        campaign(config, None)
    assert verdict(config["results"], config) == [
        "**Nothing done yet**: neither the bootstrap (iteration 0) nor any of the 2 iterations "
        "has finished."]


def test_old_campaign_without_the_energy_columns(config):
    """No energy offsets in the table or card, no audit energy: left out."""
    res = campaign(config, [row(0, new=False), row(1, False, NOT_YET, new=False),
                            row(2, False, NOT_YET, new=False)],
                   card(converged=False, reason=NOT_YET, new=False), summary())
    text = "\n".join(verdict(res, config))
    assert "force RMSE 98.7 meV/Å, energy RMSE 4 meV/atom." in text
    assert "offset" not in text and "meV/atom [" not in text
    assert "force RMSE 180 meV/Å [150, 250]." in text
    res = campaign(config, None, card(converged=False, reason=NOT_YET, new=False, audit=False))
    assert "- Audit estimate: none (no audit frames)." in verdict(res, config)


def test_an_older_card_is_completed_from_the_table(config):
    """A card made before the energy offsets existed: the last row (the same
    committee's metrics.json) has them."""
    res = campaign(config, [row(0), row(1, False, NOT_YET), row(2, False, NOT_YET)],
                   card(converged=False, reason=NOT_YET, new=False), summary())
    assert ("force RMSE 98.7 meV/Å, energy RMSE 4 meV/atom (constant offset -2.67 meV/atom, "
            "offset-free RMSE 1 meV/atom)") in "\n".join(verdict(res, config))


def test_finished_without_validation(config):
    config["validation"]["enabled"] = False
    res = campaign(config, [row(0), row(1, False, NOT_YET),
                            row(2, False, NOT_YET, audit_force_rmse=None)])
    lines = verdict(res, config)
    assert lines[0] == f"**Not converged** after 2 iterations: {NOT_YET}."
    assert lines[-1].startswith("- No final model: the validation is off")


def test_broken_files_never_raise(config):
    res = campaign(config, None)
    (res / "campaign.csv").write_text("not,a\ncampaign")
    (res / "final").mkdir()
    (res / "final" / "model_card.json").write_text("{truncated")
    assert verdict(res, config)[0].startswith("**Nothing done yet**")
    page = front_page({k: v for k, v in config.items() if k != "iterations"})
    assert page["verdict"][0].startswith("The verdict could not be read")


def test_reasons_are_escaped_for_restructuredtext(config):
    reason = "walker survival 0.50 below 0.75 (see *convergence.min_walker_survival* `x`_ |a|)"
    res = campaign(config, [row(0), row(1, False, reason), row(2, False, reason)],
                   card(converged=False, reason=reason), summary())
    html = publish_parts("\n\n".join(verdict(res, config)), writer="html")["html_body"]
    assert reason.replace("*", "") not in html and "*convergence.min_walker_survival*" in html
    assert "System Message" not in html


def test_front_page_opens_with_the_verdict(config):
    """report/workflow.rst rendered as Snakemake renders it (Jinja with the
    config only, then docutils): the verdict comes first, the stop rule is in
    the campaign's list, and the reStructuredText is valid."""
    res = campaign(config, [row(0), row(1, True, CONVERGED), row(2, True, "no-op")],
                   card(), summary())
    cfg = config | {"_report": front_page(config)}

    class Snakemake:
        config = cfg

    env = Environment(trim_blocks=True, lstrip_blocks=True)
    rst = env.from_string((REPO / "report" / "workflow.rst").read_text()).render(
        snakemake=Snakemake, categories={}, files=[])
    html = publish_parts(rst, writer="html")["html_body"]
    assert "System Message" not in html and "system-message" not in html
    assert html.index("Converged") < html.index("Each iteration trains")
    assert f"{res}/final/model.model" in html
    assert "Stop rule: no error target" in html
    # Snakemake centres the page: a tall one must start at the top, not lose it
    assert "align-items: safe center" in html
    # without the key (a job process) the page still renders
    Snakemake.config = config
    assert "Each iteration trains" in env.from_string(
        (REPO / "report" / "workflow.rst").read_text()).render(snakemake=Snakemake)


@pytest.mark.parametrize("changes, expected, absent", [
    ({}, ["no error target", "converged when 97 % of an iteration's sampled frames are accurate",
          "else after all 2 iterations"], ["upper bound"]),
    ({"target_force_rmse": 50}, [
        "the audit's 95 % upper bound is at or below 50 meV/Å on the force RMSE",
        "at least 75 % of the walkers", "production probe (2 runs of 120 steps per condition)",
        "or when 97 %"], ["energy RMSE"]),
    ({"target_force_rmse": 50, "probe_steps": 0, "min_walker_survival": 0.5, "confidence": 0.9},
     ["90 % upper bound", "at least 50 % of the walkers ran all their steps (no production probe)"],
     ["runs of"]),
    ({"target_force_rmse": 80, "target_energy_rmse": 2.5, "probe_steps": 500,
      "accurate_ratio": 0.9},
     ["80 meV/Å on the force RMSE and 2.5 meV/atom on the energy RMSE", "2 runs of 500 steps",
      "or when 90 %"], []),
])
def test_stop_rule_follows_the_config(base_config, changes, expected, absent):
    cfg = copy.deepcopy(base_config)
    cfg["convergence"] |= changes
    text = stop_rule(cfg)
    assert all(part in text for part in expected), text
    assert not any(part in text for part in absent), text


@pytest.mark.parametrize("value, shown", [(150.55, "151"), (45.67, "45.7"), (3.256, "3.26"),
                                          (0.0123, "0.0123"), (1234.4, "1234"), (None, "n/a"),
                                          (float("nan"), "n/a"), ("x", "n/a")])
def test_figures_are_formatted_alike(value, shown):
    assert fmt(value) == shown
