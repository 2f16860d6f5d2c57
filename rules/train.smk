# Committee members, trained with mace-torch's own CLI: one job per member, or
# with committee.train_in_one_job one job per iteration that trains all
# members at once (one GPU each), for GPU partitions where every submission
# waits in the queue. Later iterations may fine-tune from the member of the
# previous iteration; once the campaign has converged the previous member is
# copied (a cheap no-op).


if not config["committee"]["train_in_one_job"]:

    rule train:
        input:
            unpack(get_train_input),
        output:
            res("iter_{it}/models/member_{m}.model"),
        params:
            committee=config["committee"],
            members=lambda wc: [int(wc.m)],
            seeds=lambda wc: [member_seed(wc.m)],
            workdirs=lambda wc: [res(f"iter_{wc.it}/models/work_{wc.m}")],
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

else:

    rule train_committee:  # resources.train is per member
        input:
            unpack(get_train_input),
        output:
            [res(f"iter_{{it}}/models/member_{m}.model") for m in MEMBERS],
        params:
            committee=config["committee"],
            members=MEMBERS,
            seeds=[member_seed(m) for m in MEMBERS],
            workdirs=lambda wc: [res(f"iter_{wc.it}/models/work_{m}") for m in MEMBERS],
        log:
            [logpath(f"train/iter_{{it}}_member_{m}.log") for m in MEMBERS],
        benchmark:
            benchpath("train/iter_{it}_committee.tsv")
        threads: get_resource("train", "threads") * len(MEMBERS)
        resources:
            gpu=get_resource("train", "gpu") * len(MEMBERS),
            mem_mb=get_resource("train", "mem_mb") * len(MEMBERS),
            runtime=get_runtime("train"),
        conda:
            "../envs/mace.yaml"
        envmodules:
            *get_envmodules("train")
        script:
            "../scripts/train.py"
