# The task's protocol on frozen features: hyperparameters chosen on a validation split carved from train,
# then one prediction row per evaluation example.


rule fit:
    input:
        unpack(fit_inputs),
    output:
        "results/predictions/{model}/{dataset}/{classifier}.parquet",
    params:
        task=task_of,
        model_name=model_name_of,
        classifier=classifier_name,
        classifier_params=lambda wc: CFG.classifiers.get(classifier_name(wc), {}),
        seed=CFG.seed,
        code=fit_code,
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    log:
        "logs/fit/{model}/{dataset}/{classifier}.log",
    script:
        "../scripts/fit.py"
