# One parquet per task: example_id, split, label, label_name, path, group, and each file's size and mtime. Its input
# stands for the task's data folder and is newer than the manifest when files there changed (common.smk).


rule manifest:
    input:
        manifest_input,
    output:
        "results/manifests/{dataset}.parquet",
    params:
        task=task_of,
        data_dir=lambda wc: data_dir(task_of(wc)),
        options=lambda wc: data_options_of(task_of(wc)),
        code=manifest_code,
    log:
        "logs/manifest/{dataset}.log",
    localrule: True
    script:
        "../scripts/manifest.py"
