# Committee accuracy on the held-out test set (and on its own training set:
# an energy offset it never fitted shows there too), per iteration, and the
# campaign-wide table.


rule evaluate:
    input:
        models=lambda wc: get_models(wc.it),
        test=get_test_set(),
        train=res("iter_{it}/dataset/train.xyz"),
    output:
        metrics=res("iter_{it}/metrics.json"),
        predictions=res("iter_{it}/test_predictions.csv"),
    log:
        logpath("evaluate/iter_{it}.log"),
    benchmark:
        benchpath("evaluate/iter_{it}.tsv")
    threads: get_resource("evaluate", "threads")
    resources:
        gpu=get_resource("evaluate", "gpu"),
        mem_mb=get_resource("evaluate", "mem_mb"),
        runtime=get_runtime("evaluate"),
    conda:
        "../envs/mace.yaml"
    envmodules:
        *get_envmodules("evaluate")
    script:
        "../scripts/evaluate.py"


rule campaign:
    input:
        **get_campaign_input(),
    output:
        table=res("campaign.csv"),
        text=res("campaign.txt"),
    params:
        benchmarks=benchpath(""),  # core- and GPU-hours per iteration, from every job's file
    log:
        logpath("campaign.log"),
    benchmark:
        benchpath("campaign.tsv")
    localrule: True
    conda:
        "../envs/python.yaml"
    script:
        "../scripts/campaign.py"
