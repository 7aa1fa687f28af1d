"""`snakemake --profile profiles/slurm` on a real one-node SLURM cluster that these tests start and stop.

The cluster (tests/slurm_cluster.py) runs on loopback with two fake GPUs; Debian's packages are installed when
missing (root needed; without it the tests fail and say so). The workflow runs on the test config (same rules,
smaller data: the default config takes minutes per embedding on two CPU cores). The only settings the test adds to
the profile are the partition (through the documented BIOBENCH_SLURM_PARTITION), squeue for job status (the cluster
has no accounting database) and a short first status delay.

One interrupted run and one resumed run carry the cluster checks: in the first, an embed job is cancelled with
scancel while it runs; the second must submit only what is missing, and asks for GPUs with --gres where the first
used --gpus; the finished results must equal a local run's."""

from __future__ import annotations

import collections
import concurrent.futures
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
from snakemake.profiles import ProfileConfigFileParser

from biobench.slurm import SlurmSite, SlurmSiteError
from slurm_cluster import CONF_DIR, JobRecord, JobRecorder, SlurmCluster, is_process
from workflow_helpers import ROOT, seed_download, small_config, snakemake, snakemake_command, write_config

PROFILE = ROOT / "profiles/slurm"
TEST_OVERRIDES = ("--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "5")
RUN_TIMEOUT_S = 600  # a hang guard: both runs together take about 4 minutes on a busy 2-core machine
CANCEL_AFTER_S = 5  # the cancelled job has been running this long: Snakemake is at work inside it


def on_cluster(test):
    """Marks a test that uses the real cluster; under xdist they all run in one worker, in file order."""
    for mark in (pytest.mark.slurm, pytest.mark.workflow, pytest.mark.xdist_group("slurm")):
        test = mark(test)
    return test


def _env(**site: str) -> dict[str, str]:
    """This process's environment without the user's own BIOBENCH_SLURM_* settings, plus `site`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIOBENCH_SLURM_")}
    return env | {f"BIOBENCH_SLURM_{name.upper()}": value for name, value in site.items()}


# --- The profile's site settings, through Snakemake's own profile parser -------------------------------------------


def _rendered_profile(monkeypatch, **site: str) -> dict:
    for name in [name for name in os.environ if name.startswith("BIOBENCH_SLURM_")]:
        monkeypatch.delenv(name)
    for name, value in site.items():
        monkeypatch.setenv(f"BIOBENCH_SLURM_{name.upper()}", value)
    with open(PROFILE / "config.v8+.yaml") as stream:
        return ProfileConfigFileParser().parse(stream)


def test_profile_without_site_settings_asks_for_gpus_and_leaves_account_and_partition_to_slurm(monkeypatch):
    profile = _rendered_profile(monkeypatch)
    assert profile["executor"] == "slurm"
    assert not [r for r in profile["default-resources"] if r.startswith(("slurm_account", "slurm_partition"))]
    assert {"embed:gpu=1", "embed:cpus_per_gpu=8"} <= set(profile["set-resources"])
    assert not [r for r in profile["set-resources"] if r.startswith(("fit:gpu", "fit:gres", "embed:gres"))]


def test_profile_passes_account_partition_and_gpu_type(monkeypatch):
    profile = _rendered_profile(monkeypatch, account="lab", partition="all", gpu_partition="gpu", gpu_model="a100")
    assert {"slurm_account='lab'", "slurm_partition='all'"} <= set(profile["default-resources"])
    assert {"embed:gpu=1", "embed:gpu_model='a100'", "embed:slurm_partition='gpu'"} <= set(profile["set-resources"])


def test_profile_asks_for_gres_instead_of_gpus_when_told(monkeypatch):
    profile = _rendered_profile(monkeypatch, gpu_flag="gres", gpu_model="a100")
    assert {"embed:gres='gpu:a100:1'", "embed:gpu=0"} <= set(profile["set-resources"])
    assert not [r for r in profile["set-resources"] if r.startswith("embed:gpu_model")]


def test_site_settings_with_unusable_values_name_the_variable_and_the_fix():
    with pytest.raises(SlurmSiteError, match=r"BIOBENCH_SLURM_GPU_FLAG is 'gpu'; set it to 'gpus'.*or 'gres'"):
        SlurmSite.from_env({"BIOBENCH_SLURM_GPU_FLAG": "gpu"})
    with pytest.raises(SlurmSiteError, match=r"BIOBENCH_SLURM_PARTITION is 'gpu,cpu', but it may only contain"):
        SlurmSite.from_env({"BIOBENCH_SLURM_PARTITION": "gpu,cpu"})
    with pytest.raises(SlurmSiteError, match=r"BIOBENCH_SLURM_GPU_MODEL is 'a100-80gb'"):
        SlurmSite.from_env({"BIOBENCH_SLURM_GPU_MODEL": "a100-80gb"})


def test_gres_requests_carry_the_gpu_type_only_when_set():
    assert SlurmSite(gpu_flag="gres").gpu_resources(2) == {"gres": "'gpu:2'", "gpu": 0}
    assert SlurmSite(gpu_flag="gres", gpu_model="h100").gpu_resources(1) == {"gres": "'gpu:h100:1'", "gpu": 0}
    assert SlurmSite().gpu_resources(1) == {"gpu": 1}


# --- The real cluster -------------------------------------------------------------------------------------------


@on_cluster
def test_cluster_is_stopped_by_pid_when_the_code_using_it_fails():
    """Runs before the module's cluster is started: there is one test cluster per machine at a time."""
    with pytest.raises(RuntimeError, match="a failing test"):
        with SlurmCluster(gpus=1) as cluster:
            started = {daemon.name: daemon.pid() for daemon in cluster.daemons}
            assert all(started.values()) and cluster.node_state() == "idle"
            raise RuntimeError("a failing test")
    assert not [name for name, pid in started.items() if is_process(pid, name)]
    assert not (CONF_DIR / "slurm.conf").exists() and not cluster.state_dir.exists()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    start = time.perf_counter()
    with SlurmCluster() as cluster:
        print(f"\nSLURM test cluster up in {time.perf_counter() - start:.1f} s")
        try:
            yield cluster
        finally:
            logs = tmp_path_factory.mktemp("slurm-daemon-logs")
            for log in cluster.logs:
                if log.exists():
                    shutil.copy2(log, logs / log.name)


@dataclass(frozen=True)
class ClusterRuns:
    workdir: Path
    interrupted: subprocess.CompletedProcess  # stdout holds stdout and stderr
    cancelled: JobRecord
    first_jobs: list[JobRecord]
    rerun: subprocess.CompletedProcess
    rerun_jobs: list[JobRecord]


def _jobs_of(recorder: JobRecorder, workdir: Path) -> list[JobRecord]:
    """The recorded jobs of the workflow in workdir (any other job on this cluster is not ours to judge)."""
    return sorted((job for job in list(recorder.jobs.values()) if Path(job.workdir) == workdir),
                  key=lambda job: job.job_id)


def _embeds_running(recorder: JobRecorder, workdir: Path) -> list[JobRecord]:
    return [job for job in _jobs_of(recorder, workdir) if job.rule == "embed" and job.state == "RUNNING"]


def _seconds_running(job: JobRecord) -> float:
    return (datetime.datetime.now() - datetime.datetime.fromisoformat(job.start)).total_seconds()


def _jobs_started(output: str, kind: str = "rule|localrule") -> collections.Counter:
    """Jobs Snakemake started, by rule: 'rule X:' went to SLURM, 'localrule X:' ran on the submitting host."""
    return collections.Counter(re.findall(rf"^(?:{kind}) (\w+):$", output, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, animals_data):
    """The same config run locally, as a Future: it runs while the cluster runs wait between status checks."""
    workdir = tmp_path_factory.mktemp("local-workflow")
    write_config(workdir, small_config())
    seed_download(workdir, animals_data)

    def run() -> Path:
        snakemake(workdir)
        return workdir

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit(run)


@pytest.fixture(scope="module")
def cluster_runs(cluster, local_run, tmp_path_factory, animals_data) -> ClusterRuns:
    workdir = tmp_path_factory.mktemp("slurm-workflow").resolve()
    write_config(workdir, small_config())
    seed_download(workdir, animals_data)
    command = snakemake_command(workdir, "--profile", str(PROFILE), *TEST_OVERRIDES)
    start = time.perf_counter()

    with JobRecorder() as first:
        run = subprocess.Popen(command, env=_env(partition=cluster.partition), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while (len(running := _embeds_running(first, workdir)) < 2
                   or _seconds_running(running[-1]) < CANCEL_AFTER_S):
                if run.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"two embed jobs never ran at once; snakemake said:\n{run.communicate()[0][-6000:]}")
                time.sleep(0.2)
            cancelled = running[-1]
            subprocess.run(["scancel", str(cancelled.job_id)], check=True, timeout=30)
            output = run.communicate(timeout=RUN_TIMEOUT_S)[0]
        finally:
            if run.poll() is None:
                run.kill()
    (workdir / "interrupted-run.log").write_text(output)
    interrupted = subprocess.CompletedProcess(run.args, run.returncode, output)

    with JobRecorder() as second:
        rerun = subprocess.run(command, env=_env(partition=cluster.partition, gpu_flag="gres",
                                                 gpu_model=cluster.gpu_type),
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S)
    (workdir / "rerun.log").write_text(rerun.stdout)
    assert rerun.returncode == 0, f"the resumed SLURM run failed:\n{rerun.stdout[-8000:]}"
    print(f"\nSLURM runs (interrupted and resumed) took {time.perf_counter() - start:.0f} s")
    return ClusterRuns(workdir, interrupted, first.jobs[cancelled.job_id], _jobs_of(first, workdir), rerun,
                       [job for job in _jobs_of(second, workdir) if job.job_id not in first.jobs])


def _embeds(jobs: list[JobRecord]) -> list[JobRecord]:
    return [job for job in jobs if job.rule == "embed"]


@on_cluster
def test_cancelled_job_stops_the_run_with_a_clear_failure(cluster_runs):
    run, job = cluster_runs.interrupted, cluster_runs.cancelled
    assert job.state == "CANCELLED"
    assert run.returncode != 0
    assert f"SLURM-job '{job.job_id}' failed, SLURM status is: 'CANCELLED'" in run.stdout
    assert "Error in rule embed" in run.stdout


@on_cluster
def test_rerun_submits_only_the_missing_jobs(cluster_runs):
    """Missing after the interrupted run: the embeddings it did not finish, every fit, and what follows them."""
    embedded = {job.wildcards for job in _embeds(cluster_runs.first_jobs) if job.state == "COMPLETED"}
    every_embed = {job.wildcards for job in _embeds(cluster_runs.first_jobs + cluster_runs.rerun_jobs)}
    assert len(every_embed) == 2 * len(small_config()["models"]) and embedded  # a train and a test split per model
    assert {job.wildcards for job in _embeds(cluster_runs.rerun_jobs)} == every_embed - embedded
    submitted = collections.Counter(job.rule for job in cluster_runs.rerun_jobs)
    assert _jobs_started(cluster_runs.rerun.stdout, "rule") == submitted  # each cluster job submitted once
    assert submitted["embed"] == len(every_embed - embedded) and submitted["fit"] == len(small_config()["models"])
    assert not {"download", "manifest"} & set(_jobs_started(cluster_runs.rerun.stdout))


@on_cluster
def test_downloads_run_on_the_submitting_host(cluster_runs):
    assert _jobs_started(cluster_runs.interrupted.stdout, "localrule")["download"] == 1
    assert "download" not in {job.rule for job in cluster_runs.first_jobs + cluster_runs.rerun_jobs}


@on_cluster
def test_embed_jobs_asked_for_and_got_one_gpu(cluster_runs):
    assert {job.gpu_request for job in _embeds(cluster_runs.first_jobs)} == {"gres:gpu:1"}  # sbatch --gpus=1
    assert {job.gpu_request for job in _embeds(cluster_runs.rerun_jobs)} == {"gres:gpu:fake:1"}  # --gres=gpu:fake:1
    for job in cluster_runs.first_jobs + cluster_runs.rerun_jobs:
        if job.rule == "embed":
            assert job.gpus_allocated == "gpu:fake:1", job
            assert len(job.gpu_indices) == 1 or job.state != "COMPLETED", job
        else:
            assert not job.gpu_request and not job.gpus_allocated, job


@on_cluster
def test_jobs_get_the_profiles_cpus_whatever_the_submitting_machine_has(cluster_runs):
    """profiles/default (`cores: all`) caps a job's threads at this machine's cores; the requests must not shrink."""
    requested = {"embed": 8, "fit": 4, "aggregate": 4, "report": 2}  # cpus_per_gpu / cpus_per_task in the profile
    completed = [job for job in cluster_runs.first_jobs + cluster_runs.rerun_jobs if job.state == "COMPLETED"]
    assert {job.rule for job in completed} >= {"embed", "fit"}
    assert all(job.cpus == requested[job.rule] for job in completed), completed


def _interval(job: JobRecord) -> tuple[datetime.datetime, datetime.datetime]:
    return datetime.datetime.fromisoformat(job.start), datetime.datetime.fromisoformat(job.end)


@on_cluster
def test_two_embed_jobs_ran_at_once_on_the_two_gpus(cluster_runs):
    ran = [job for job in _embeds(cluster_runs.first_jobs + cluster_runs.rerun_jobs) if job.gpu_indices]
    overlapping = [(a, b) for i, a in enumerate(ran) for b in ran[i + 1:]
                   if _interval(a)[0] < _interval(b)[1] and _interval(b)[0] < _interval(a)[1]]
    assert all(a.gpu_indices.isdisjoint(b.gpu_indices) for a, b in overlapping), overlapping
    assert any(a.state == b.state == "COMPLETED" and a.gpu_indices | b.gpu_indices == {0, 1}
               for a, b in overlapping), ran


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


@on_cluster
def test_cluster_results_equal_the_local_run(cluster_runs, local_run):
    cluster_scores, cluster_predictions = _results(cluster_runs.workdir)
    local_scores, local_predictions = _results(local_run.result())
    assert len(cluster_predictions) == len(small_config()["models"]) * 100
    assert cluster_predictions == local_predictions
    assert cluster_scores == local_scores
