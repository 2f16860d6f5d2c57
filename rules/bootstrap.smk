# Iteration 0: structures to label (perturbed copies of the initial structures,
# or frames of MD with a foundation model), a held-out test set, and the
# isolated-atom energies (E0s) of the reference.


if config["bootstrap"]["source"] == "foundation_md":

    # Decorrelated frames of short NVT MD with the foundation model at the
    # sampling temperatures: exploration before any reference label exists.
    rule bootstrap_md:
        input:
            structures=config["structures"],
            model=FOUNDATION,
        output:
            [res(f"iter_000/bootstrap/chunk_{c}.xyz") for c in get_chunks("iter_000")],
        params:
            temperatures=config["sampling"]["temperatures"],
            n=config["bootstrap"]["n_structures"],
            md=config["bootstrap"]["md"],
            seed=config["seed"],
        log:
            logpath("bootstrap.log"),
        benchmark:
            benchpath("bootstrap.tsv")
        threads: get_resource("sample", "threads")
        resources:
            gpu=get_resource("sample", "gpu"),
            mem_mb=get_resource("sample", "mem_mb"),
            runtime=get_runtime("sample"),
        conda:
            "../envs/mace.yaml"
        envmodules:
            *get_envmodules("sample")
        script:
            "../scripts/bootstrap_md.py"

else:

    rule bootstrap:
        input:
            config["structures"],
        output:
            [res(f"iter_000/bootstrap/chunk_{c}.xyz") for c in get_chunks("iter_000")],
        params:
            n=config["bootstrap"]["n_structures"],
            rattle=config["bootstrap"]["rattle"],
            strain=config["bootstrap"]["strain"],
            seed=config["seed"],
            tag="bootstrap",
        log:
            logpath("bootstrap.log"),
        benchmark:
            benchpath("bootstrap.tsv")
        localrule: True
        conda:
            "../envs/python.yaml"
        script:
            "../scripts/perturb.py"


# The held-out test set (unless test_set.path gives one): unlabelled structures
# in test/structures, labelled by the label rule like everything else. Only one
# of the two rules making them exists, chosen by test_set.source.
TEST_SOURCE = config["test_set"]["source"]

if TEST_SOURCE == "reference_md":

    # Decorrelated frames of short NVT MD with the reference itself at the
    # sampling temperatures; runs the reference, hence the label resources.
    rule test_md:
        input:
            structures=config["structures"],
            template=get_template(),
        output:
            [res(f"test/structures/chunk_{c}.xyz") for c in get_chunks("test")],
        params:
            level_of_theory=get_level_of_theory(),
            temperatures=config["sampling"]["temperatures"],
            n=config["test_set"]["n_structures"],
            md=science("test_set", "md"),
            seed=config["seed"] + 7919,
            workdir=res("test/md_work"),
        log:
            logpath("test_md.log"),
        benchmark:
            benchpath("test_md.tsv")
        threads: get_label_threads()
        resources:
            **get_label_resources(),
        conda:
            "../envs/cp2k.yaml"
        envmodules:
            *get_envmodules("label")
        script:
            "../scripts/test_md.py"

else:

    # Randomly perturbed copies of the initial structures (other seed than
    # the bootstrap).
    rule test_structures:
        input:
            config["structures"],
        output:
            [res(f"test/structures/chunk_{c}.xyz") for c in get_chunks("test")],
        params:
            n=config["test_set"]["n_structures"],
            rattle=config["test_set"]["rattle"],
            strain=config["test_set"]["strain"],
            seed=config["seed"] + 7919,
            tag="test",
        log:
            logpath("test_structures.log"),
        benchmark:
            benchpath("test_structures.tsv")
        localrule: True
        conda:
            "../envs/python.yaml"
        script:
            "../scripts/perturb.py"


rule e0s:
    input:
        template=get_template(),
    output:
        res("reference/e0s.json"),
    params:
        level_of_theory=get_level_of_theory(),
        e0s=config["reference"]["e0s"],
        elements=ELEMENTS,
        cache=res("reference/label_cache"),
        workdir=res("reference/e0s_work"),
    log:
        logpath("e0s.log"),
    benchmark:
        benchpath("e0s.tsv")
    threads: get_label_threads()
    resources:
        **get_label_resources(),
    conda:
        "../envs/cp2k.yaml"
    envmodules:
        *get_envmodules("label")
    script:
        "../scripts/e0s.py"


if FOUNDATION:

    # Fine-tuning starts from a model with E0s of its own level of theory: a
    # warning when they differ from the reference's (needs torch: mace env).
    rule foundation_e0s:
        input:
            foundation=FOUNDATION,
            e0s=res("reference/e0s.json"),
        output:
            res("reference/foundation_e0s.json"),
        log:
            logpath("foundation_e0s.log"),
        benchmark:
            benchpath("foundation_e0s.tsv")
        resources:
            mem_mb=get_resource("train", "mem_mb"),
        conda:
            "../envs/mace.yaml"
        script:
            "../scripts/foundation_e0s.py"
