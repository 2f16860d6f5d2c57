# The dataset of iteration i: that of i-1 plus the new labels, split
# deterministically into train/valid (a frame never changes side).
# reference.max_failure_rate only flags (read from the config, not a param).


rule dataset:
    input:
        unpack(get_dataset_input),
    output:
        train=res("iter_{it}/dataset/train.xyz"),
        valid=res("iter_{it}/dataset/valid.xyz"),
        summary=res("iter_{it}/dataset/summary.json"),
    params:
        valid_fraction=config["dataset"]["valid_fraction"],
        max_force=config["dataset"]["max_force"],
        seed=config["seed"],
    log:
        logpath("dataset/iter_{it}.log"),
    benchmark:
        benchpath("dataset/iter_{it}.tsv")
    localrule: True
    conda:
        "../envs/python.yaml"
    script:
        "../scripts/dataset.py"
