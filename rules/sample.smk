# MD walkers driven by the committee of the previous iteration, one job per
# pack of walkers (the committee is loaded once per pack).


rule sample:
    input:
        unpack(get_sample_input),
    output:
        frames=res("iter_{it}/sample/pack_{p}.xyz"),
        states=res("iter_{it}/sample/states_{p}.xyz"),
        records=res("iter_{it}/sample/walkers_{p}.json"),
    params:
        sampling=science("sampling"),  # batched, batch_size, device, dtype: from the config
        trust_hi=config["selection"]["trust_hi"],
        trust_mode=config["selection"]["trust_mode"],
        prior_scale=config["selection"]["prior_scale"],
        descriptors=config["selection"]["strategy"] == "fps",
        elements=ELEMENTS,
        convergence=CONVERGENCE,
        seed=config["seed"],
        **PROBE,
    log:
        logpath("sample/iter_{it}_pack_{p}.log"),
    benchmark:
        benchpath("sample/iter_{it}_pack_{p}.tsv")
    threads: get_resource("sample", "threads")
    resources:
        gpu=get_resource("sample", "gpu"),
        mem_mb=get_resource("sample", "mem_mb"),
        runtime=get_runtime("sample"),
    conda:
        "../envs/mace.yaml"
    envmodules:
        *get_envmodules("sample")
    script:
        "../scripts/sample.py"
