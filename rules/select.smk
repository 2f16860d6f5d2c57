# Classify sampled frames by committee deviation, pick candidates to label and
# write them into a fixed number of chunks (some possibly empty); frames.csv
# keeps every frame's deviation and class for the report.


rule select:
    input:
        unpack(get_select_input),
    output:
        chunks=[res(f"iter_{{it}}/select/chunk_{c}.xyz") for c in get_chunks("iter_001")],
        stats=res("iter_{it}/select/stats.json"),
        frames=res("iter_{it}/select/frames.csv"),
    params:
        selection=science("selection"),  # chunk_size: the number of chunk files
        convergence=CONVERGENCE,
        seed=config["seed"],
    log:
        logpath("select/iter_{it}.log"),
    benchmark:
        benchpath("select/iter_{it}.tsv")
    localrule: True
    conda:
        "../envs/python.yaml"
    script:
        "../scripts/select.py"
