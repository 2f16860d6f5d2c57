# The figures of the campaign report (snakemake --report report.html). Each
# figure is made per iteration as soon as that iteration is done, so a running
# or stopped campaign has the figures of its finished iterations; campaign-wide
# figures (learning curve, dataset, compute) show the campaign up to then.


rule report_campaign:
    input:
        unpack(get_report_campaign_input),
    output:
        learning_curve=report_figure("learning_curve", "1. Learning curve"),
        parity=report_figure("parity", "2. Test-set parity"),
        dataset=report_figure("dataset", "6. Dataset and label failures"),
        compute=report_figure("compute", "7. Compute"),
    params:
        benchmarks=benchpath(""),
    log:
        logpath("report/campaign_iter_{it}.log"),
    benchmark:
        benchpath("report/campaign_iter_{it}.tsv")
    localrule: True
    conda:
        "../envs/python.yaml"
    script:
        "../scripts/report_campaign.py"


rule report_iteration:
    input:
        frames=res("iter_{it}/select/frames.csv"),
        stats=res("iter_{it}/select/stats.json"),
        calibration=res("iter_{it}/calibration.csv"),
        calibration_summary=res("iter_{it}/calibration.json"),
        records=lambda wc: [res(f"iter_{wc.it}/sample/walkers_{p}.json") for p in range(N_PACKS)],
    output:
        deviation=report_figure("deviation", "3. Committee deviation"),
        calibration=report_figure("calibration", "4. Calibration: deviation vs true error"),
        exploration=report_figure("exploration", "5. Exploration"),
    params:
        steps=config["sampling"]["steps"],
    log:
        logpath("report/iteration_{it}.log"),
    benchmark:
        benchpath("report/iteration_{it}.tsv")
    localrule: True
    conda:
        "../envs/python.yaml"
    script:
        "../scripts/report_iteration.py"
