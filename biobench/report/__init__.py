"""The HTML report: reports/index.html plus one file per figure for `snakemake --report`."""

from biobench.report.build import FIGURE_FILES, INDEX_FILE, build_report

__all__ = ["FIGURE_FILES", "INDEX_FILE", "build_report"]
