# Reference singlepoints (CP2K or an ASE calculator), one job per chunk.
# Structures that fail (SCF not converged, crash) go to failed_{c}.xyz with the
# reason; the chunk itself succeeds. Per-structure work directories under
# label/work_{c}/ keep CP2K's input and output and let a rerun skip finished ones.


rule label:
    input:
        get_label_input,
    output:
        labelled=res("{stage}/label/chunk_{c}.xyz"),
        failed=res("{stage}/label/failed_{c}.xyz"),
    params:
        reference=config["reference"],
        workdir=lambda wc: res(f"{wc.stage}/label/work_{wc.c}"),
    log:
        logpath("label/{stage}_chunk_{c}.log"),
    benchmark:
        benchpath("label/{stage}_chunk_{c}.tsv")
    threads: get_label_threads()
    resources:
        **get_label_resources(),
    conda:
        "../envs/cp2k.yaml"
    envmodules:
        *get_envmodules("label")
    script:
        "../scripts/label.py"
