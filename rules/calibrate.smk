# How well did the committee of i-1 predict its real error on the frames it
# chose? The labels of iteration i are the truth; no extra reference call.


rule calibrate:
    input:
        labels=lambda wc: get_labels(f"iter_{wc.it}"),
        stats=res("iter_{it}/select/stats.json"),
    output:
        table=res("iter_{it}/calibration.csv"),
        summary=res("iter_{it}/calibration.json"),
    log:
        logpath("calibrate/iter_{it}.log"),
    benchmark:
        benchpath("calibrate/iter_{it}.tsv")
    localrule: True
    conda:
        "../envs/python.yaml"
    script:
        "../scripts/calibrate.py"
