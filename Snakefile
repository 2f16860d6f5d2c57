# Active learning of MACE interatomic potentials: train -> sample -> select -> label.
# Science lives in the `alflow` package; rules only wire files together.
# Where and how jobs run lives in profiles/<name>/config.yaml.
import sys

import yaml
from snakemake.utils import min_version, validate

min_version("9.0")
sys.path.insert(0, workflow.basedir)  # the alflow package (scripts: the symlink scripts/alflow)
from alflow.config import coerce_cli_strings


configfile: "config/config.yaml"


SCHEMA = os.path.join(workflow.basedir, "config", "schema.yaml")
with open(SCHEMA) as schema_file:
    config.update(coerce_cli_strings(config, yaml.safe_load(schema_file)))
validate(config, SCHEMA)


report: "report/workflow.rst"


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


rule all:
    input:
        get_final_outputs(),
    default_target: True
