# One committee member per job, trained with mace-torch's own CLI. Later
# iterations may fine-tune from the member of the previous iteration; once the
# campaign has converged the previous member is copied (a cheap no-op).


rule train:
    input:
        unpack(get_train_input),
    output:
        res("iter_{it}/models/member_{m}.model"),
    params:
        committee=config["committee"],
        convergence=CONVERGENCE,
        seed=lambda wc: config["seed"] * 1000 + int(wc.m),
        workdir=lambda wc: res(f"iter_{wc.it}/models/work_{wc.m}"),
    log:
        logpath("train/iter_{it}_member_{m}.log"),
    benchmark:
        benchpath("train/iter_{it}_member_{m}.tsv")
    threads: get_resource("train", "threads")
    resources:
        gpu=get_resource("train", "gpu"),
        mem_mb=get_resource("train", "mem_mb"),
        runtime=get_runtime("train"),
    conda:
        "../envs/mace.yaml"
    envmodules:
        *get_envmodules("train")
    script:
        "../scripts/train.py"
