"""`snakemake --profile profiles/slurm` on a real one-node SLURM cluster that these tests start and stop.

The cluster (tests/slurm_cluster.py) runs on loopback with two fake GPUs; Debian's packages are installed when
missing (root needed; without it the tests fail and say so). The workflow is the test config (same rules, smaller
data). The only settings added to the profile are the partition (through the documented BIOBENCH_SLURM_PARTITION),
squeue for job status (the cluster has no accounting database) and a short first status delay.

One interrupted run and one resumed run carry every check: the first run has an embed job cancelled with scancel
while it runs, the second one must submit only what is missing (and asks for GPUs with --gres, the first with
--gpus), and the finished results must equal a local run's."""

from __future__ import annotations

import collections
import datetime
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from slurm_cluster import CONF_DIR, JobRecord, JobRecorder, SlurmCluster, _is_process
from workflow_helpers import ROOT, planned_jobs, seed_download, small_config, snakemake, snakemake_command, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.workflow, pytest.mark.xdist_group("slurm")]

TEST_OVERRIDES = ("--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2")
RUN_TIMEOUT_S = 300


def test_cluster_is_stopped_by_pid_when_the_code_using_it_fails():
    """Runs first, before the module's cluster exists (one test cluster per machine at a time)."""
    with pytest.raises(RuntimeError, match="a failing test"):
        with SlurmCluster(gpus=1) as cluster:
            started = {daemon.name: daemon.pid() for daemon in cluster.daemons}
            assert all(started.values()) and cluster.node_state() == "idle"
            raise RuntimeError("a failing test")
    assert not [name for name, pid in started.items() if _is_process(pid, name)]
    assert not (CONF_DIR / "slurm.conf").exists()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    start = time.perf_counter()
    with SlurmCluster() as cluster:
        print(f"SLURM test cluster up in {time.perf_counter() - start:.1f} s")
        try:
            yield cluster
        finally:
            logs = tmp_path_factory.mktemp("slurm-daemon-logs")
            for log in cluster.logs:
                if log.exists():
                    shutil.copy2(log, logs / log.name)


def _env(**site: str) -> dict[str, str]:
    """This process's environment without the user's own BIOBENCH_SLURM_* settings, plus `site`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIOBENCH_SLURM_")}
    return env | {f"BIOBENCH_SLURM_{name.upper()}": value for name, value in site.items()}


@dataclass(frozen=True)
class ClusterRuns:
    workdir: Path
    interrupted: subprocess.CompletedProcess
    cancelled: JobRecord
    first_jobs: dict[int, JobRecord]
    missing_before_rerun: dict[str, int]  # rule -> jobs, from a dry run just before the rerun
    rerun: subprocess.CompletedProcess
    rerun_jobs: dict[int, JobRecord]


def _embeds_running(recorder: JobRecorder) -> list[JobRecord]:
    return sorted((job for job in list(recorder.jobs.values()) if job.rule == "embed" and job.state == "RUNNING"),
                  key=lambda job: job.job_id)


def _jobs_run(output: str, kind: str = "rule|localrule") -> collections.Counter:
    """Jobs that Snakemake started, by rule: 'rule X:' went to SLURM, 'localrule X:' ran on the submitting host."""
    return collections.Counter(re.findall(rf"^(?:{kind}) (\w+):$", output, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def cluster_runs(cluster, tmp_path_factory, animals_data) -> ClusterRuns:
    workdir = tmp_path_factory.mktemp("slurm-workflow")
    write_config(workdir, small_config())
    seed_download(workdir, animals_data)
    profile = ("--profile", str(ROOT / "profiles/slurm"))
    env = _env(partition=cluster.partition)

    with JobRecorder() as first:
        run = subprocess.Popen(snakemake_command(workdir, *profile, *TEST_OVERRIDES), env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while len(_embeds_running(first)) < 2:
                if run.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"two embed jobs never ran at once; snakemake:\n{run.communicate()[0][-6000:]}")
                time.sleep(0.2)
            cancelled = _embeds_running(first)[-1]
            subprocess.run(["scancel", str(cancelled.job_id)], check=True, timeout=30)
            output = run.communicate(timeout=RUN_TIMEOUT_S)[0]
        finally:
            if run.poll() is None:
                run.kill()
    interrupted = subprocess.CompletedProcess(run.args, run.returncode, output, "")
    (workdir / "interrupted-run.log").write_text(output)

    dry_run = subprocess.run(snakemake_command(workdir, *profile, *TEST_OVERRIDES, "-n"), env=env, text=True,
                             capture_output=True, timeout=120)
    assert dry_run.returncode == 0, dry_run.stderr[-4000:]

    with JobRecorder() as second:
        rerun = subprocess.run(snakemake_command(workdir, *profile, *TEST_OVERRIDES),
                               env=_env(partition=cluster.partition, gpu_flag="gres", gpu_model=cluster.gpu_type),
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S)
    (workdir / "rerun.log").write_text(rerun.stdout)
    assert rerun.returncode == 0, f"the resumed SLURM run failed:\n{rerun.stdout[-8000:]}"
    return ClusterRuns(workdir, interrupted, first.jobs[cancelled.job_id], dict(first.jobs),
                       planned_jobs(dry_run), rerun,
                       {job_id: job for job_id, job in second.jobs.items() if job_id not in first.jobs})


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, animals_data) -> Path:
    workdir = tmp_path_factory.mktemp("local-workflow")
    write_config(workdir, small_config())
    seed_download(workdir, animals_data)
    snakemake(workdir)
    return workdir


def test_cancelled_job_stops_the_run_with_a_clear_failure(cluster_runs):
    run, job = cluster_runs.interrupted, cluster_runs.cancelled
    assert job.state == "CANCELLED"
    assert run.returncode != 0
    assert f"SLURM-job '{job.job_id}' failed, SLURM status is: 'CANCELLED'" in run.stdout
    assert "Error in rule embed" in run.stdout


def test_rerun_submits_only_the_missing_jobs(cluster_runs):
    first, rerun = cluster_runs.first_jobs.values(), cluster_runs.rerun_jobs.values()
    assert _jobs_run(cluster_runs.rerun.stdout) == cluster_runs.missing_before_rerun
    assert collections.Counter(job.rule for job in rerun) == _jobs_run(cluster_runs.rerun.stdout, kind="rule")
    embedded = {job.wildcards for job in first if job.rule == "embed" and job.state == "COMPLETED"}
    every_embed = {job.wildcards for job in [*first, *rerun] if job.rule == "embed"}
    assert embedded and {job.wildcards for job in rerun if job.rule == "embed"} == every_embed - embedded
    assert len(every_embed) == len(small_config()["models"]) * 2  # train and test split per model


def test_embed_jobs_asked_for_and_got_one_gpu(cluster_runs):
    first, rerun = cluster_runs.first_jobs.values(), cluster_runs.rerun_jobs.values()
    requests = {(job in rerun, job.gpu_request) for job in [*first, *rerun] if job.rule == "embed"}
    assert requests == {(False, "gres:gpu:1"), (True, "gres:gpu:fake:1")}  # --gpus=1, then --gres=gpu:fake:1
    for job in [*first, *rerun]:
        if job.rule == "embed":
            assert job.gpus_allocated == "gpu:fake:1", job
            assert len(job.gpu_indices) == 1 or job.state != "COMPLETED", job
        else:
            assert not job.gpu_request and not job.gpus_allocated, job


def _interval(job: JobRecord) -> tuple[datetime.datetime, datetime.datetime]:
    return datetime.datetime.fromisoformat(job.start), datetime.datetime.fromisoformat(job.end)


def test_two_embed_jobs_ran_at_once_on_the_two_gpus(cluster_runs):
    ran = [job for job in [*cluster_runs.first_jobs.values(), *cluster_runs.rerun_jobs.values()]
           if job.rule == "embed" and job.gpu_indices]
    overlapping = [(a, b) for i, a in enumerate(ran) for b in ran[i + 1:]
                   if _interval(a)[0] < _interval(b)[1] and _interval(b)[0] < _interval(a)[1]]
    assert overlapping, ran
    assert all(a.gpu_indices.isdisjoint(b.gpu_indices) for a, b in overlapping), overlapping
    assert any(a.state == b.state == "COMPLETED" and a.gpu_indices | b.gpu_indices == {0, 1}
               for a, b in overlapping), overlapping


def _results(workdir: Path) -> tuple[list, list]:
    con = duckdb.connect(str(workdir / "results/biobench.duckdb"), read_only=True)
    try:
        scores = con.execute("SELECT model, task, metric, value, ci_low, ci_high, n FROM task_scores "
                             "ORDER BY model, task").fetchall()
        predictions = con.execute("SELECT model, task, example_id, y_true, y_pred, prob FROM predictions "
                                  "ORDER BY model, task, example_id").fetchall()
    finally:
        con.close()
    return scores, predictions


def test_cluster_results_equal_the_local_run(cluster_runs, local_run):
    cluster_scores, cluster_predictions = _results(cluster_runs.workdir)
    local_scores, local_predictions = _results(local_run)
    assert len(cluster_predictions) == 2 * 100
    assert cluster_predictions == local_predictions
    assert cluster_scores == local_scores
