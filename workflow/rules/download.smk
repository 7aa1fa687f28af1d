# Fetch each task's real dataset. `snakemake prepare` runs every download (e.g. on a login node with internet).


rule download:
    output:
        "resources/data/{task}/.download-complete",
    params:
        options=lambda wc: data_options_of(wc.task),
        code=download_code,
    log:
        "logs/download/{task}.log",
    localrule: True
    script:
        "../scripts/download.py"


rule prepare:
    input:
        [download_stamp(task) for task in CFG.tasks if not CFG.tasks[task].datadir],
    localrule: True
