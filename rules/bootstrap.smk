# Iteration 0: perturbed copies of the initial structures, a held-out test set,
# and the isolated-atom energies (E0s) of the reference.


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
    output:
        res("reference/e0s.json"),
    params:
        reference=config["reference"],
        elements=ELEMENTS,
        workdir=res("reference/e0s_work"),
    log:
        logpath("e0s.log"),
    benchmark:
        benchpath("e0s.tsv")
    threads: get_resource("label", "tasks") * get_resource("label", "cpus_per_task")
    resources:
        tasks=get_resource("label", "tasks"),
        cpus_per_task=get_resource("label", "cpus_per_task"),
        mpi=get_resource("label", "mpi"),
        mem_mb=get_resource("label", "mem_mb"),
        runtime=get_runtime("label"),
    conda:
        "../envs/cp2k.yaml"
    envmodules:
        *get_envmodules("label")
    script:
        "../scripts/e0s.py"
