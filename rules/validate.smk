# Is the potential ready for production? After the last iteration (or the
# converged one, which the later no-op iterations carry to the end): long MD
# with the final committee at every sampled condition and a hotter one, its
# stability and structure against the reference MD of the test set
# (results/validation/), then the deliverable model with its card
# (results/final/).


rule validate:
    input:
        unpack(get_validate_input),
    output:
        summary=res("validation/summary.json"),
        trajectories=res("validation/trajectories.xyz"),
        stability=report(res("validation/stability.svg"), caption="../report/stability.rst",
                         category="8. Production readiness", subcategory="final committee",
                         labels={"figure": "stability and deviation"}),
        rdf=report(res("validation/rdf.svg"), caption="../report/rdf.rst",
                   category="8. Production readiness", subcategory="final committee",
                   labels={"figure": "radial distribution"}),
    params:
        # the deliverable's precision and LAMMPS export are rule final's
        validation={k: v for k, v in science("validation").items()
                    if k not in ("model_dtype", "lammps")},
        sampling=science("sampling"),
        selection=science("selection"),
        test_source=None if TEST_GIVEN else config["test_set"]["source"],
        seed=config["seed"],
    log:
        logpath("validate.log"),
    benchmark:
        benchpath("validate.tsv")
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
        "../scripts/validate.py"


rule final:
    input:
        unpack(get_final_input),
    output:
        committee=[res(f"final/committee/member_{m}.model") for m in MEMBERS],
        model=res("final/model.model"),
        card=res("final/model_card.json"),
        card_text=res("final/model_card.md"),
    params:
        model_dtype=config["validation"]["model_dtype"],
        lammps=config["validation"]["lammps"],
        level_of_theory=get_level_of_theory(),
        sampling=science("sampling"),
        elements=ELEMENTS,
    log:
        logpath("final.log"),
    benchmark:
        benchpath("final.tsv")
    localrule: True
    conda:
        "../envs/mace.yaml"
    script:
        "../scripts/final.py"
