# Committee members, trained with mace-torch's own CLI: one job per member, or
# with committee.train_in_one_job one job per iteration that trains all
# members at once (one GPU each), for GPU partitions where every submission
# waits in the queue. Later iterations may fine-tune from the member of the
# previous iteration; once the campaign has converged the previous member is
# copied (a cheap no-op). Both rules have the same inputs and params, so a
# switch between them (a profile's train_in_one_job) reruns nothing; a member
# is retrained only when its data's content or its science changed.


if not config["committee"]["train_in_one_job"]:

    rule train:
        input:
            unpack(get_train_input),
        output:
            res("iter_{it}/models/member_{m}.model"),
        params:
            committee=science("committee"),
            stress_weight=alcfg.stress_weight(config),
            seed=config["seed"],
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
            committee=science("committee"),
            stress_weight=alcfg.stress_weight(config),
            seed=config["seed"],
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
