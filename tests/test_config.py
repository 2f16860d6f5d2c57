"""Bad configuration is reported, with the key's name, before any job runs."""
import copy

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from alflow import config as alcfg
from conftest import REPO

SCHEMA = str(REPO / "config" / "schema.yaml")


def emt_config():
    cfg = yaml.safe_load((REPO / "tests" / "data" / "emt.yaml").read_text())
    cfg["structures"] = str(REPO / "tests" / "data" / "cu_16.xyz")
    validate(cfg, SCHEMA)
    return cfg


def test_defaults_are_filled():
    cfg = emt_config()
    assert cfg["selection"]["strategy"] == "balanced"
    assert cfg["convergence"]["accurate_ratio"] == 0.97
    assert cfg["reference"]["cp2k"]["command"] == "cp2k"
    assert "template" not in cfg["reference"]["cp2k"]  # no demo template underneath
    assert cfg["committee"]["mace"] == {"r_max": 3.5, "num_channels": 8, "max_L": 0,
                                        "num_interactions": 1, "correlation": 1,
                                        "batch_size": 4, "valid_batch_size": 8,
                                        # the workflow's own training defaults fill in
                                        "model": "ScaleShiftMACE", "stage_two": True}
    alcfg.check(cfg)


def test_stage_two_that_would_never_be_validated_is_refused():
    cfg = emt_config()  # 8 epochs from scratch, 4 fine-tuning: stage two from 6 and 3
    assert alcfg.stage_two_start(cfg["committee"]["mace"], 8) == 6
    cfg["committee"]["mace"]["eval_interval"] = 4
    with pytest.raises(alcfg.ConfigError, match=r"committee.epochs = 8: stage two .* epochs 6-7"
                                                r".*eval_interval = 4"):
        alcfg.check(cfg)
    cfg["committee"]["mace"]["start_stage_two"] = 4  # validated at epoch 4: fine
    cfg["committee"]["finetune_epochs"] = 6
    alcfg.check(cfg)
    cfg["committee"]["mace"].update(stage_two=False, start_stage_two=None)  # off: no check
    assert alcfg.stage_two_start(cfg["committee"]["mace"], 8) is None
    alcfg.check(cfg)


def test_shipped_configs_are_valid():
    for path in (REPO / "config").glob("*.yaml"):
        if path.name != "schema.yaml":
            cfg = yaml.safe_load(path.read_text())
            validate(cfg, SCHEMA)


def test_readme_config_table_is_the_schema():
    """Keys, defaults and enums in the README are those of the schema (the
    table is generated: python -m alflow.schema_doc README.md)."""
    from alflow import schema_doc

    readme = (REPO / "README.md").read_text()
    assert schema_doc.readme_table(readme) == schema_doc.table()
    keys = [row[0] for row in schema_doc.rows()]
    for key in ("`sampling.batch_size`", "`reference.cp2k.template`", "`committee.stress_weight`",
                "`selection.adaptive.hi_factor`", "`resources`"):
        assert key in keys
    row = dict((r[0], r) for r in schema_doc.rows())
    assert row["`bootstrap.n_structures`"][1] == "`24`"
    assert row["`sampling.batch_size`"][2] == "never" and row["`sampling.steps`"][2] == "science"
    assert "`fixed`" in row["`selection.trust_mode`"][3] and "`adaptive`" in row[
        "`selection.trust_mode`"][3]


def test_science_leaves_out_where_and_how_fast():
    """A rule's params hold the science: performance and site settings are not
    part of it, so changing them reruns nothing."""
    cfg = emt_config()
    fast = copy.deepcopy(cfg)
    fast["sampling"].update(batch_size=7, batched=False, device="cuda", dtype="float64")
    fast["committee"].update(device="cuda", train_in_one_job=True)
    fast["committee"]["mace"]["valid_batch_size"] = 64
    fast["reference"].update(time_limit="2h", max_failure_rate=0.5)
    fast["selection"]["chunk_size"] = 5
    for keys in (("sampling",), ("committee",), ("selection",), ("reference",)):
        assert alcfg.science(cfg, *keys) == alcfg.science(fast, *keys), keys
    assert alcfg.level_of_theory(cfg) == alcfg.level_of_theory(fast)
    assert "batch_size" not in alcfg.science(cfg, "sampling")
    assert alcfg.science(cfg, "committee")["mace"]["r_max"] == 3.5
    science = copy.deepcopy(cfg)
    science["sampling"]["steps"] += 1
    science["committee"]["mace"]["r_max"] = 4.0
    science["sampling"]["bias"] = 0.2
    science["reference"]["ase"]["kwargs"] = {"asap_cutoff": True}
    for keys in (("sampling",), ("committee",)):
        assert alcfg.science(cfg, *keys) != alcfg.science(science, *keys), keys
    assert alcfg.level_of_theory(cfg) != alcfg.level_of_theory(science)
    # a key added later (x-omit-at-default) is science, but at its default, which
    # does what the workflow did before it existed, campaigns run before it plan nothing
    assert cfg["sampling"]["bias"] == 0 and "bias" not in alcfg.science(cfg, "sampling")
    assert alcfg.science(science, "sampling")["bias"] == 0.2
    assert cfg["sampling"]["bias_wall"] == 0 and "bias_wall" not in alcfg.science(science, "sampling")


def test_stress_is_trained_for_npt_walkers():
    cfg = emt_config()
    assert alcfg.stress_weight(cfg) == 0.0
    cfg["sampling"]["pressures"] = [0.0]
    assert alcfg.stress_weight(cfg) == alcfg.NPT_STRESS_WEIGHT
    cfg["committee"]["stress_weight"] = 0
    assert alcfg.stress_weight(cfg) == 0.0


def test_cp2k_reference_needs_a_template():
    cfg = emt_config()
    cfg["reference"]["kind"] = "cp2k"
    with pytest.raises(alcfg.ConfigError, match="reference.cp2k.template: required"):
        alcfg.check(cfg)


@pytest.mark.parametrize("patch,word", [
    ({"iteratons": 3}, "iteratons"),  # a typo
    ({"selection": {"trust_lo": "low"}}, "trust_lo"),
    ({"committee": {"size": 1}}, "size"),
    ({"sampling": {"temperatures": []}}, "temperatures"),
    ({"reference": {"kind": "vasp"}}, "vasp"),
])
def test_schema_names_the_bad_key(patch, word):
    cfg = yaml.safe_load((REPO / "tests" / "data" / "emt.yaml").read_text())
    for key, value in patch.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    with pytest.raises(WorkflowError, match=word):
        validate(cfg, SCHEMA)


def _broken(**changes):
    cfg = emt_config()
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = cfg
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


@pytest.mark.parametrize("changes,message", [
    ({"structures": "nope.xyz"}, "structures: structure file nope.xyz does not exist"),
    ({"selection__trust_lo": 0.9, "selection__trust_hi": 0.5}, "selection.trust_lo"),
    ({"committee__mace": {"seed": 3}}, "committee.mace"),
    ({"reference__e0s": {"H": 1.0}}, "reference.e0s: no energy for ['Cu']"),
    ({"reference__ase": {"calculator": "ase.calculators.nope.Nope", "kwargs": {}}},
     "reference.ase.calculator"),
    ({"resources": {"train": {"runtime": "soon"}}}, "resources.train.runtime"),
    ({"resources": {"label": {"tasks": 6, "concurrent": 4}}},
     "resources.label: tasks (6) must be a multiple of concurrent (4)"),
    ({"bootstrap__dataset": str(REPO / "tests" / "data" / "cu_16.xyz")}, "bootstrap.dataset"),
])
def test_semantic_checks_name_the_key(changes, message):
    with pytest.raises(alcfg.ConfigError) as info:
        alcfg.check(_broken(**changes))
    assert message in str(info.value)


def test_cp2k_template_is_parsed_before_jobs(tmp_path):
    bad = tmp_path / "broken.inp"
    bad.write_text("&FORCE_EVAL\n  METHOD Quickstep\n  &DFT\n")  # unterminated sections
    cfg = _broken(reference__kind="cp2k")
    cfg["reference"]["cp2k"]["template"] = str(bad)
    with pytest.raises(alcfg.ConfigError, match="reference.cp2k.template.*broken.inp"):
        alcfg.check(cfg)


def test_derived_counts():
    cfg = emt_config()
    assert alcfg.stage_chunks(cfg, "iter_000") == 4  # 12 bootstrap / 3
    assert alcfg.stage_chunks(cfg, "test") == 3  # 8 / 3
    assert alcfg.stage_chunks(cfg, "iter_005") == 2  # max_selected 6 / 3
    assert alcfg.n_walkers(cfg) == 2 and alcfg.n_packs(cfg) == 2
    c2 = copy.deepcopy(cfg)
    c2["sampling"]["packs"] = 10
    assert alcfg.n_packs(c2) == 2


def test_probe_only_with_a_target():
    cfg = emt_config()
    cfg["convergence"]["target_force_rmse"] = None
    assert alcfg.probe_settings(cfg) is None  # no target: the sample jobs' params stay as they were
    cfg["convergence"]["target_force_rmse"] = 50.0
    probe = alcfg.probe_settings(cfg)
    assert probe["steps"] == 3 * cfg["sampling"]["steps"]
    assert probe["seeds"] == cfg["validation"]["seeds"]
    assert probe["min_distance_fraction"] == cfg["selection"]["min_distance_fraction"]
    cfg["convergence"]["probe_steps"] = 40
    assert alcfg.probe_settings(cfg)["steps"] == 40
    cfg["convergence"]["probe_steps"] = 0
    assert alcfg.probe_settings(cfg) is None


@pytest.mark.parametrize("value,expected", [(90, 90), ("90", 90), ("90m", 90), ("2h", 120),
                                            ("1.5h", 90), ("30s", 1), (0.2, 1)])
def test_minutes(value, expected):
    assert alcfg.minutes(value) == expected


def test_nested_command_line_values_are_read_as_the_schema_types():
    """Snakemake reads a nested --config value (also a profile's `config:`
    list) with YAML's BaseLoader: every scalar inside is a string."""
    from snakemake.cli import parse_config

    schema = yaml.safe_load(open(SCHEMA))
    given = parse_config(["committee={train_in_one_job: true, size: 3, finetune: False}",
                          "selection={trust_lo: 0.05, strategy: fps}",
                          "resources={train: {gpu: 1, runtime: 2h}}",
                          "sampling={temperatures: [300, 600]}",
                          "convergence={target_force_rmse: null, probe_steps: ~}"])
    assert given["committee"]["train_in_one_job"] == "true"  # what Snakemake hands over
    cfg = alcfg.coerce_cli_strings(given, schema)
    assert cfg["committee"] == {"train_in_one_job": True, "size": 3, "finetune": False}
    assert cfg["selection"] == {"trust_lo": 0.05, "strategy": "fps"}
    assert cfg["resources"]["train"] == {"gpu": 1, "runtime": "2h"}  # via $ref
    assert cfg["sampling"]["temperatures"] == [300.0, 600.0]
    # a null switches a target off, as it does in a YAML config file
    assert cfg["convergence"] == {"target_force_rmse": None, "probe_steps": None}
    # a value repeated on the command line is what the config file gives, to
    # the type: 300 stays an int (params "300", not "300.0": no rerun)
    for text in ["{target_force_rmse: 300, confidence: 0.9}", "{target_force_rmse: 1.5e+2}"]:
        cli = alcfg.coerce_cli_strings(parse_config([f"convergence={text}"]), schema)
        assert repr(cli["convergence"]) == repr(yaml.safe_load(text))
    # what does not read as the schema's type is left for validation to name
    bad = alcfg.coerce_cli_strings(parse_config(["committee={train_in_one_job: maybe}"]), schema)
    with pytest.raises(WorkflowError, match="train_in_one_job"):
        validate({**emt_config(), **{"committee": bad["committee"]}}, SCHEMA)


def test_key_order_in_the_config_never_reruns():
    """Snakemake compares a rule's params by their text: a campaign whose
    config lists the same keys in another order (a key moved in the YAML, a
    default added at the end) must give identical params."""
    from alflow.config import science

    a = {"selection": {"trust_lo": 0.1, "trust_hi": 1.0, "prior_scale": 3.0,
                       "adaptive": {"hi_factor": 4.0, "candidate_fraction": 0.2}}}
    b = {"selection": {"adaptive": {"candidate_fraction": 0.2, "hi_factor": 4.0},
                       "prior_scale": 3.0, "trust_hi": 1.0, "trust_lo": 0.1}}
    assert repr(science(a, "selection")) == repr(science(b, "selection"))
