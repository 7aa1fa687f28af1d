# Every prediction -> DuckDB tables with paired-bootstrap intervals, plus leaderboard exports.


rule aggregate:
    input:
        predictions=all_predictions(),
        manifests=[manifest_path(task) for task in CFG.tasks],
    output:
        db="results/biobench.duckdb",
        json="results/leaderboard.json",
        csv="results/leaderboard.csv",
    params:
        resamples=CFG.bootstrap.resamples,
        confidence=CFG.bootstrap.confidence,
        seed=CFG.bootstrap.seed,
        macro_f1_classes=CFG.bootstrap.macro_f1_classes,
        code=keys.code_digest("biobench.aggregate"),
        schema=keys.resource_digest("results_schema.sql"),
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    log:
        "logs/aggregate.log",
    localrule: True
    script:
        "../scripts/aggregate.py"
