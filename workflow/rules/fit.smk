# The task's protocol on frozen features, once per training size (tasks.<task>.n_train): hyperparameters chosen on
# validation rows carved from the training rows, then one prediction row per evaluation example.


rule fit:
    input:
        unpack(fit_inputs),
    output:
        "results/predictions/{model}/{dataset}/{classifier}/train-{n_train}.parquet",
    params:
        task=task_of,
        model_name=model_name_of,
        classifier=classifier_name,
        classifier_params=lambda wc: CLASSIFIER_SETTINGS[task_of(wc)],
        n_train=lambda wc: 0 if wc.n_train == "all" else int(wc.n_train),
        seed=CFG.seed,
        code=fit_code,
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    log:
        "logs/fit/{model}/{dataset}/{classifier}/train-{n_train}.log",
    script:
        "../scripts/fit.py"
