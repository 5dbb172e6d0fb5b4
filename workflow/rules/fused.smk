# Fused jobs (src/deltaspace/fused_plan.py): up to K runs that share one loaded backbone in one
# process, one Slurm GPU job each. stage0.fuse: K groups stage-0 runs of one backbone, method and head
# (deltaspace train-fused); a setting's optimize.fuse: K its optimize-subspace runs of one subspace
# and source method (deltaspace optimize-fused); config/paper/all.yaml's fuse: K does both after
# merging the experiments. A fused job's one output is the manifest it writes when all its runs are
# done:
#   results/{experiment}/fused/{stage0,optimize}/{n}.json
# Its runs write the folders the single-run rules would; a job reading one of those files waits for
# the manifest instead. One wildcard rule per stage costs Snakemake what one job does, where a rule
# per fused job would grow superlinearly (docs/workflow.md, "Scale").


rule train_fused:
    input:
        unpack(PLAN.inputs("train_fused")),
    output:
        **PLAN.outputs("train_fused"),
    log:
        PLAN.log("train_fused"),
    benchmark:
        PLAN.benchmark("train_fused")
    params:
        args=PLAN.args("train_fused"),
    threads: PLAN.threads("train_fused")
    resources:
        **PLAN.resources("train_fused"),
    shell:
        PLAN.shell("train_fused")


rule optimize_fused:
    input:
        unpack(PLAN.inputs("optimize_fused")),
    output:
        **PLAN.outputs("optimize_fused"),
    log:
        PLAN.log("optimize_fused"),
    benchmark:
        PLAN.benchmark("optimize_fused")
    params:
        args=PLAN.args("optimize_fused"),
    threads: PLAN.threads("optimize_fused")
    resources:
        **PLAN.resources("optimize_fused"),
    shell:
        PLAN.shell("optimize_fused")
