# The results database -> reports/index.html (open it in a browser) and the same figures for `snakemake --report`.

REPORT_FIGURES = {
    "leaderboard": ("figures/leaderboard.html", "Leaderboard"),
    "task_scores": ("figures/task_scores.svg", "Scores per task"),
    "pairwise": ("figures/pairwise.svg", "Pairwise comparisons"),
    "train_sizes": ("figures/train_sizes.svg", "Score against training size"),
    "imagenet_vs_biology": ("figures/imagenet_vs_biology.svg", "ImageNet vs biology"),
    "compute": ("figures/compute.svg", "Compute cost"),
    "examples": ("figures/examples.html", "Example browser"),
}


rule report:
    input:
        db=rules.aggregate.output.db,
    output:
        index="reports/index.html",
        **{
            name: report(
                f"reports/{path}",
                caption=f"../report/{name}.rst",
                category="biobench",
                labels={"figure": title},
            )
            for name, (path, title) in REPORT_FIGURES.items()
        },
    params:
        code=keys.code_digest("biobench.report"),
    log:
        "logs/report.log",
    localrule: True
    script:
        "../scripts/report.py"
