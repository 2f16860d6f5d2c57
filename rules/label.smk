# Reference singlepoints (CP2K or an ASE calculator), one job per chunk.
# Structures that fail (SCF not converged, crash) go to failed_{c}.xyz with the
# reason; the chunk itself succeeds. Per-structure work directories under
# label/work_{c}/ keep CP2K's input and output. Finished labels are kept in a
# campaign-wide cache (reference/label_cache), keyed by the structure and the
# level of theory, so a rerun never pays twice for a structure; a finished
# chunk is not relabelled with other structures unless ALFLOW_RELABEL=1.


rule label:
    input:
        structures=get_label_input,
        template=get_template(),
    output:
        labelled=res("{stage}/label/chunk_{c}.xyz"),
        failed=res("{stage}/label/failed_{c}.xyz"),
    params:
        level_of_theory=get_level_of_theory(),
        workdir=lambda wc: res(f"{wc.stage}/label/work_{wc.c}"),
        cache=res("reference/label_cache"),
    log:
        logpath("label/{stage}_chunk_{c}.log"),
    benchmark:
        benchpath("label/{stage}_chunk_{c}.tsv")
    threads: get_label_threads()
    resources:
        **get_label_resources(),
        concurrent=get_resource("label", "concurrent"),
    conda:
        "../envs/cp2k.yaml"
    envmodules:
        *get_envmodules("label")
    script:
        "../scripts/label.py"
