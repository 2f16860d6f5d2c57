# How good is the committee of i-1, and does its deviation mean anything? The
# labels of iteration i are the truth: the audit frames (a uniform sample of
# what the walkers explored) estimate its real force RMSE with an interval,
# all labelled frames calibrate its deviation; the stop rule
# (convergence.target_force_rmse) is decided here, never on the test set.


rule calibrate:
    input:
        unpack(get_calibrate_input),
    output:
        table=res("iter_{it}/calibration.csv"),
        summary=res("iter_{it}/calibration.json"),
    params:
        # the probe's verdict comes in with the select stats (an input)
        convergence={k: v for k, v in science("convergence").items() if k != "probe_steps"},
        seed=config["seed"],
    log:
        logpath("calibrate/iter_{it}.log"),
    benchmark:
        benchpath("calibrate/iter_{it}.tsv")
    localrule: True
    conda:
        "../envs/python.yaml"
    script:
        "../scripts/calibrate.py"
