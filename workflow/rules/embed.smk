# Images -> features, one parquet per (model, dataset, split). The only GPU step.


rule embed:
    input:
        manifest="results/manifests/{dataset}.parquet",
    output:
        "results/embeddings/{model}/{dataset}/{split}.parquet",
    params:
        spec=lambda wc: MODEL_BY_KEY[wc.model].identity() | {"batch_size": MODEL_BY_KEY[wc.model].batch_size},
        run_dtype=lambda wc: PRECISION_BY_KEY[wc.model].dtype,  # planned for the device jobs use; in the model key
        frame_pooling=lambda wc: TASKS.get(task_of(wc)).frame_pooling,
        code=embed_code,
    threads: 4
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    log:
        "logs/embed/{model}/{dataset}/{split}.log",
    script:
        "../scripts/embed.py"
