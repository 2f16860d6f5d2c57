# Active learning of MACE interatomic potentials: train -> sample -> select -> label.
# Science lives in the `alflow` package; rules only wire files together.
# Where and how jobs run lives in profiles/<name>/config.yaml; what the
# campaign is lives in the config file given with --configfile (the demo:
# config/demo.yaml), completed from the defaults in config/schema.yaml.
from snakemake.utils import min_version, validate

min_version("9.0")
try:
    from alflow import config as alcfg
except ImportError as exc:
    raise WorkflowError(
        f"cannot import the alflow package ({exc}): install this workflow into the Python "
        "that runs snakemake, with `make setup` (or `pip install -e .` in this directory)")

if "structures" not in config:
    raise WorkflowError(
        "no campaign configuration: give one with --configfile, e.g.\n"
        "  snakemake --profile profiles/local --configfile config/demo.yaml   (the demo)\n"
        "  snakemake --profile profiles/local --configfile my_campaign.yaml\n"
        "A campaign needs at least `structures` (and `reference.cp2k.template` for CP2K); "
        "every other key has a default in config/schema.yaml (see the README's table).")

SCHEMA = alcfg.SCHEMA_PATH
config.update(alcfg.coerce_cli_strings(config, alcfg.load_schema()))
validate(config, str(SCHEMA))


report: "report/workflow.rst"
# The report's front page is rendered with the config alone: its verdict and
# stop rule (alflow/verdict.py, a few small files read) go under a key that
# no rule's params or script reads, so it never reruns anything.
if workflow.is_main_process:
    from alflow.verdict import front_page

    config["_report"] = front_page(config)


include: "rules/common.smk"
include: "rules/bootstrap.smk"
include: "rules/label.smk"
include: "rules/dataset.smk"
include: "rules/train.smk"
include: "rules/sample.smk"
include: "rules/select.smk"
include: "rules/calibrate.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/validate.smk"


rule all:
    input:
        get_final_outputs(),
    default_target: True
