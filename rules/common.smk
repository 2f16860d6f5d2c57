import os

from alflow import config as alcfg
from alflow import status as alstatus

# Check files and the CP2K template once, in the main snakemake process (job
# processes, e.g. on SLURM nodes, re-read this file and need not redo it).
if workflow.is_main_process:
    try:
        alcfg.check(config)
    except alcfg.ConfigError as exc:
        raise WorkflowError(f"invalid configuration: {exc}")

ITERATIONS = config["iterations"]
# `alflow report` on a running or stopped campaign: only what is finished
REPORT_FINISHED = bool(os.environ.get(alstatus.REPORT_ENV))
if REPORT_FINISHED:
    ITERATIONS = min(ITERATIONS, alstatus.reported_iterations(config["results"]))
    if ITERATIONS < 0:
        raise WorkflowError(f"no iteration of the campaign in {config['results']}/ has "
                            "finished yet: nothing to report")
MEMBERS = list(range(config["committee"]["size"]))
N_PACKS = alcfg.n_packs(config)
# read from the structure files once, by the main process; jobs read its answer
ELEMENTS = alcfg.elements(config, cache=os.path.join(".snakemake", "alflow", "elements.json"),
                          compute=workflow.is_main_process)
CONVERGENCE = config["convergence"]["accurate_ratio"]
# the production probe before a target stop: a param of sample only with a
# target, so that a campaign without one keeps its sample jobs
PROBE = {k: v for k, v in {"probe": alcfg.probe_settings(config)}.items() if v is not None}
TEST_GIVEN = bool(config["test_set"]["path"])
DATASET_GIVEN = bool(config["bootstrap"]["dataset"])
FOUNDATION = config["committee"]["foundation_model"]


wildcard_constraints:
    it=r"\d{3}",
    stage=r"iter_\d{3}|test",
    c=r"\d+",
    m=r"\d+",
    p=r"\d+",


def science(*keys):
    """config[keys...] without its execution and structure keys (schema
    `x-rerun`): what a rule's params may hold. Where and how fast a job runs
    is read by the scripts from snakemake.config and never reruns a job."""
    return alcfg.science(config, *keys)


def get_level_of_theory():
    """What decides a reference label (params of label, e0s and test_md); the
    CP2K template is their input file (get_template) instead."""
    return alcfg.level_of_theory(config)


def get_template():
    return alcfg.template_files(config)


def res(path):
    """A path under the campaign's results directory."""
    return os.path.join(config["results"], path)


def logpath(path):
    return os.path.join(config["results"], "logs", path)


def benchpath(path):
    return os.path.join(config["results"], "benchmarks", path)


def iter_dir(i):
    return res(f"iter_{int(i):03d}")


def get_resource(rule, key):
    return alcfg.resources(config, rule)[key]


def get_runtime(rule):
    """Walltime in minutes, growing with each retry of the job."""
    base = alcfg.minutes(get_resource(rule, "runtime"))
    return lambda wildcards, attempt: base * attempt


def get_label_threads():
    """Cores of one reference job (label, e0s, test_md): MPI ranks x OpenMP threads."""
    return get_resource("label", "tasks") * get_resource("label", "cpus_per_task")


def get_label_resources():
    """Resources of every job that runs the reference (label, e0s, test_md)."""
    return {
        **{k: get_resource("label", k) for k in ("tasks", "cpus_per_task", "mpi", "mem_mb")},
        "runtime": get_runtime("label"),
    }


def get_envmodules(rule):
    """Site modules for a rule (config key envmodules, set by cluster profiles)."""
    return config["envmodules"][rule]


def get_chunks(stage):
    return range(alcfg.stage_chunks(config, stage))


def get_label_input(wildcards):
    if wildcards.stage == "test":
        return res(f"test/structures/chunk_{wildcards.c}.xyz")
    if wildcards.stage == "iter_000":
        return res(f"iter_000/bootstrap/chunk_{wildcards.c}.xyz")
    return res(f"{wildcards.stage}/select/chunk_{wildcards.c}.xyz")


def get_labels(stage, kind="chunk"):
    return [res(f"{stage}/label/{kind}_{c}.xyz") for c in get_chunks(stage)]


def get_dataset_input(wildcards):
    i = int(wildcards.it)
    if i == 0 and DATASET_GIVEN:
        return {"new": config["bootstrap"]["dataset"]}
    stage = f"iter_{i:03d}"
    files = {"new": get_labels(stage), "failed": get_labels(stage, "failed")}
    if i > 0:
        files["train"] = f"{iter_dir(i - 1)}/dataset/train.xyz"
        files["valid"] = f"{iter_dir(i - 1)}/dataset/valid.xyz"
    return files


def get_models(i):
    return [f"{iter_dir(i)}/models/member_{m}.model" for m in MEMBERS]


def get_train_input(wildcards):
    i = int(wildcards.it)
    files = {
        "train": f"{iter_dir(i)}/dataset/train.xyz",
        "valid": f"{iter_dir(i)}/dataset/valid.xyz",
        "e0s": res("reference/e0s.json"),
    }
    if i > 0:  # the whole previous committee, for rule train and train_committee
        files["previous"] = get_models(i - 1)  # alike (a switch reruns nothing)
        files["stats"] = f"{iter_dir(i)}/select/stats.json"
    elif FOUNDATION:
        files["foundation"] = FOUNDATION
        files["foundation_e0s"] = res("reference/foundation_e0s.json")
    return files


def get_sample_input(wildcards):
    """The committee of i-1; from iteration 2 on each walker's last state and
    record, and the labelled dataset (trusted frames to restart walkers from)."""
    i = int(wildcards.it)
    prev = iter_dir(i - 1)
    files = {
        "models": get_models(i - 1),
        "structures": config["structures"],
        "dataset": f"{prev}/dataset/train.xyz",
    }
    if i > 1:
        files["states"] = f"{prev}/sample/states_{wildcards.p}.xyz"
        files["records"] = f"{prev}/sample/walkers_{wildcards.p}.json"
        files["stats"] = f"{prev}/select/stats.json"
        files["calibration"] = f"{prev}/calibration.json"  # the audit's stop decision
    return files


def get_select_input(wildcards):
    i = int(wildcards.it)
    files = {
        "packs": [f"{iter_dir(i)}/sample/pack_{p}.xyz" for p in range(N_PACKS)],
        "records": [f"{iter_dir(i)}/sample/walkers_{p}.json" for p in range(N_PACKS)],
    }
    if i > 1:
        files["stats"] = f"{iter_dir(i - 1)}/select/stats.json"
        files["calibration"] = f"{iter_dir(i - 1)}/calibration.json"
    return files


def get_calibrate_input(wildcards):
    """This iteration's labels and selection, and the calibration tables of
    the earlier iterations whose audit frames are pooled with its own."""
    i = int(wildcards.it)
    first = max(1, i - config["convergence"]["audit_window"] + 1)
    return {
        "labels": get_labels(f"iter_{i:03d}"),
        "stats": f"{iter_dir(i)}/select/stats.json",
        "pooled": [f"{iter_dir(k)}/calibration.csv" for k in range(first, i)],
    }


def get_test_set():
    return [config["test_set"]["path"]] if TEST_GIVEN else get_labels("test")


def get_campaign_input():
    its = range(ITERATIONS + 1)
    return {
        "metrics": [f"{iter_dir(i)}/metrics.json" for i in its],
        "datasets": [f"{iter_dir(i)}/dataset/summary.json" for i in its],
        "stats": [f"{iter_dir(i)}/select/stats.json" for i in its if i > 0],
        "calibration": [f"{iter_dir(i)}/calibration.json" for i in its if i > 0],
    }


def report_figure(name, category):
    """A figure of iteration {it}, flagged for Snakemake's report with its
    caption (report/<name>.rst), under its topic and iteration."""
    return report(
        res(f"report/iter_{{it}}/{name}.svg"),
        caption=f"../report/{name}.rst",
        category=category,
        subcategory="iteration {it}",
        labels={"figure": name.replace("_", " "), "iteration": "{it}"},
    )


def get_report_campaign_input(wildcards):
    """Campaign-wide figures of iteration i: everything up to i."""
    i = int(wildcards.it)
    files = {
        "metrics": [f"{iter_dir(k)}/metrics.json" for k in range(i + 1)],
        "datasets": [f"{iter_dir(k)}/dataset/summary.json" for k in range(i + 1)],
        "calibration": [f"{iter_dir(k)}/calibration.csv" for k in range(1, i + 1)],
        "predictions": f"{iter_dir(i)}/test_predictions.csv",
    }
    if i > 0:
        files["first_predictions"] = f"{iter_dir(0)}/test_predictions.csv"
    return files


def get_report_figures():
    its = range(ITERATIONS + 1)
    return [res(f"report/iter_{i:03d}/{name}.svg") for i in its for name in
            alstatus.ITERATION_FIGURES + (alstatus.LOOP_FIGURES if i > 0 else ())]


def get_validate_input(wildcards):
    """The final committee and its test metrics (its energy errors go into
    the summary), every calibration (the latest scale sets the deviation
    cap), the initial structures and the reference-MD test set."""
    return {
        "models": get_models(ITERATIONS),
        "metrics": f"{iter_dir(ITERATIONS)}/metrics.json",
        "calibrations": [f"{iter_dir(i)}/calibration.json" for i in range(1, ITERATIONS + 1)],
        "structures": config["structures"],
        "test": get_test_set(),
    }


def get_final_input(wildcards):
    last = iter_dir(ITERATIONS)
    return {
        "models": get_models(ITERATIONS),
        "validation": res("validation/summary.json"),
        "metrics": f"{last}/metrics.json",
        "dataset": f"{last}/dataset/summary.json",
        "calibrations": [f"{iter_dir(i)}/calibration.json" for i in range(1, ITERATIONS + 1)],
        "template": get_template(),
    }


def get_final_outputs():
    """Every product of the campaign, so that a deleted file (a label chunk, a
    model) is noticed and remade together with everything downstream of it."""
    stages = ([] if TEST_GIVEN else ["test"]) + [
        f"iter_{i:03d}" for i in range(ITERATIONS + 1) if i > 0 or not DATASET_GIVEN
    ]
    files = [res("campaign.csv")] + get_report_figures()
    validation = [res("final/model_card.json"), res("validation/stability.svg")]
    if config["validation"]["enabled"] and not (
        REPORT_FINISHED and not all(os.path.exists(f) for f in validation)
    ):
        files += validation
    for stage in stages:
        files += get_labels(stage) + get_labels(stage, "failed")
    for i in range(ITERATIONS + 1):
        files += get_models(i)
        if i > 0:
            files += [f"{iter_dir(i)}/sample/pack_{p}.xyz" for p in range(N_PACKS)]
    return files
