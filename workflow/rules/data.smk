# Data: sample and tokenize one task for one backbone and data seed (deltaspace prepare).
#   results/{experiment}/data/{backbone}/{task}/seed{dseed}/{train,dev,test}.parquet, manifest.json
# The split sizes, lengths and few-shot K come from the config's `data:` section; a paper's metric
# overrides (config `paper:`) are applied when the task is scored.


rule prepare:
    output:
        manifest=f"{R}/data/{{backbone}}/{{task}}/seed{{dseed}}/manifest.json",
        splits=multiext(f"{R}/data/{{backbone}}/{{task}}/seed{{dseed}}/", "train.parquet", "dev.parquet", "test.parquet"),
    log:
        f"{R}/logs/prepare/{{backbone}}/{{task}}/seed{{dseed}}.log",
    params:
        args=prepare_args,
    threads: threads_of("prepare")
    resources:
        **resources_of("prepare"),
    shell:
        "deltaspace prepare {params.args} > {log:q} 2>&1"
