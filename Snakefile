# Active learning of MACE interatomic potentials: train -> sample -> select -> label.
# Science lives in the `alflow` package; rules only wire files together.
# Where and how jobs run lives in profiles/<name>/config.yaml.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")


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
