"""A real one-node SLURM cluster on loopback for the SLURM profile's tests: slurmctld, slurmd and a private munged.

The node advertises fake GPUs (gres/gpu backed by links to /dev/null) and more CPUs and memory than this machine
has (`SlurmdParameters=config_overrides`), so that the profile's real per-rule requests are scheduled unchanged.
It needs root (slurmd starts jobs as their user; the config must live in /etc/slurm, because the plugin's in-job
`srun` drops SLURM_CONF) and Debian's packages, which `ensure_packages` installs with apt-get when missing.
Every daemon is stopped by the PID it recorded; nothing this module did not start is touched."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from debian import apt_install

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
CONF_DIR = Path("/etc/slurm")
MARKER = "# Written by biobench tests/slurm_cluster.py for a test cluster; removed when the test ends."
LOCK = Path(tempfile.gettempdir()) / "biobench-slurm-test.lock"


class ClusterError(RuntimeError):
    """The test cluster cannot be installed or started; the message says why and what to do."""


def _run(*cmd: str, timeout: float = 30, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip() or result.stdout}")
    return result


def _installed(package: str) -> bool:
    result = _run("dpkg-query", "-W", "-f=${Status}", package, check=False)
    return result.returncode == 0 and "install ok installed" in result.stdout


def ensure_packages() -> None:
    """Install Debian's SLURM and MUNGE packages when missing (apt-get, as root; services are not started)."""
    if not shutil.which("dpkg-query"):
        raise ClusterError("the SLURM test needs Debian's slurmctld, slurmd, slurm-client and munge packages; "
                           "run it on Debian or Ubuntu")
    missing = [package for package in PACKAGES if not _installed(package)]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ClusterError(f"the SLURM test needs the packages {' '.join(missing)}; run the tests as root so that "
                           f"they install them, or install them: apt-get install --no-install-recommends "
                           f"{' '.join(missing)}")
    apt_install(missing)  # --no-install-recommends: 8 small packages instead of 42 (hdf5, rocm-smi, ...)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Daemon:
    """A daemon this module started, known by its pid file."""

    name: str  # the process name, checked before it is signalled
    pid_file: Path

    def pid(self) -> int | None:
        """The PID in the pid file if that process is running and is this daemon."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if is_process(pid, self.name) else None


def stop_daemons(daemons: list[Daemon], grace_s: float = 10) -> None:
    """SIGTERM to all at once (each takes about 2 s to exit), then SIGKILL to any still alive after grace_s
    (slurmd can ignore SIGTERM for a while). Only PIDs whose process name matches are signalled."""
    running = {pid: daemon.name for daemon in daemons if (pid := daemon.pid()) is not None}
    for pid in running:
        os.kill(pid, signal.SIGTERM)
    # the daemons delete their pid files before they exit: watch the processes themselves
    _wait_for_quietly(lambda: not any(is_process(pid, name) for pid, name in running.items()), grace_s)
    for pid, name in running.items():
        if is_process(pid, name):
            os.kill(pid, signal.SIGKILL)
    _wait_for_quietly(lambda: not any(is_process(pid, name) for pid, name in running.items()), grace_s)


def is_process(pid: int, name: str) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == name
    except OSError:
        return False


def _wait_for(what: str, ready, timeout_s: float, diagnostics) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{diagnostics()}")
        time.sleep(0.1)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class SlurmCluster:
    """`with SlurmCluster(...) as cluster:` starts it and always stops it. State, logs and pid files live in a fresh
    temporary directory; /etc/slurm/{slurm,gres}.conf are written (refused if another installation owns them)."""

    gpus: int = 2
    gpu_type: str = "fake"
    cpus: int = 32
    memory_mb: int = 128_000
    partition: str = "gpu"
    state_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="biobench-slurm-")))
    node: str = field(default_factory=lambda: socket.gethostname().split(".")[0])

    def __post_init__(self) -> None:
        self.state_dir.chmod(0o755)  # munged refuses a socket directory that others cannot enter
        self.log_dir = self.state_dir / "log"
        self.munge_socket = self.state_dir / "munge-run" / "munge.socket"
        self.daemons = [Daemon("munged", self.state_dir / "munge-run" / "munged.pid"),
                        Daemon("slurmctld", self.state_dir / "slurmctld.pid"),
                        Daemon("slurmd", self.state_dir / "slurmd.pid")]
        self._lock_file = None
        self._wrote_config = False

    @property
    def logs(self) -> list[Path]:
        return [self.log_dir / name for name in ("munged.log", "slurmctld.log", "slurmd.log")]

    def _log_tails(self) -> str:
        return "\n".join(f"--- {log}\n{_tail(log)}" for log in self.logs)

    def __enter__(self) -> SlurmCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        if os.geteuid() != 0:
            raise ClusterError("the SLURM test needs root: slurmd starts jobs as their owner and the cluster's "
                               "config must be /etc/slurm/slurm.conf; run the tests as root (CI does)")
        self._take_lock()
        ensure_packages()
        self._write_config()
        self._start_munged()
        for command in (["/usr/sbin/slurmctld"], ["/usr/sbin/slurmd", "-N", self.node]):
            result = subprocess.run(command, capture_output=True, text=True, timeout=30)  # they fork, write pid files
            if result.returncode != 0:
                raise ClusterError(f"{command[0]} did not start: {result.stderr.strip()}\n{self._log_tails()}")
        _wait_for(f"node {self.node} to be idle", lambda: self.node_state() == "idle", 30, self._log_tails)

    def stop(self) -> None:
        """Cancel every job of this cluster, stop the daemons by PID, remove the config this cluster wrote."""
        if self.daemons[1].pid() is not None:
            subprocess.run(["scancel", "--user", "root"], capture_output=True, timeout=30)
            _wait_for_quietly(lambda: not self.squeue_ids() and not self._job_steps(), timeout_s=20)
        stop_daemons(self.daemons)
        if self._wrote_config:
            for name in ("slurm.conf", "gres.conf"):
                path = CONF_DIR / name
                if path.exists() and path.read_text().startswith(MARKER):
                    path.unlink()
            self._wrote_config = False
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None
        if all(daemon.pid() is None for daemon in self.daemons):
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def _job_steps(self) -> list[Path]:
        """Each job step's slurmstepd keeps a socket <node>_<job>.<step> in the spool directory until it ends."""
        return [path for path in (self.state_dir / "spool").glob(f"{self.node}_*.*") if path.is_socket()]

    def node_state(self) -> str:
        result = subprocess.run(["sinfo", "-h", "-n", self.node, "-o", "%T"], capture_output=True, text=True,
                                timeout=10)
        return result.stdout.strip()

    def squeue_ids(self) -> list[str]:
        result = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=10)
        return result.stdout.split()

    def _take_lock(self) -> None:
        """One test cluster per machine at a time: /etc/slurm/slurm.conf is global."""
        self._lock_file = open(LOCK, "w")
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ClusterError(f"another test session holds {LOCK} (its SLURM test cluster is running); "
                                       "wait for it to finish") from None
                time.sleep(1)

    def _write_config(self) -> None:
        conf = CONF_DIR / "slurm.conf"
        if conf.exists() and not conf.read_text().startswith(MARKER):
            raise ClusterError(f"{conf} belongs to another SLURM installation; the test will not overwrite it. "
                               "Run the SLURM test on a machine without a SLURM configuration (CI does)")
        for sub in ("ctld", "spool", "log", "dev"):
            (self.state_dir / sub).mkdir(exist_ok=True)
        # Slurm drops GPUs without a File=, refuses two with the same file, and needs character devices:
        # links with distinct names to /dev/null pass all three checks.
        gpu_files = []
        for index in range(self.gpus):
            link = self.state_dir / "dev" / f"nvidia{index}"
            link.symlink_to("/dev/null")
            gpu_files.append(link)
        d = self.state_dir
        CONF_DIR.mkdir(parents=True, exist_ok=True)
        conf.write_text(f"""{MARKER}
ClusterName=biobench-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={d}/ctld
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={self.log_dir}/slurmctld.log
SlurmdLogFile={self.log_dir}/slurmd.log
# no cgroups, no accounting database: status comes from squeue/scontrol
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# the node below is described, not probed: more CPUs and memory than this machine, fake GPUs
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
KillWait=5
# finished jobs stay visible to squeue/scontrol for 5 minutes (>= 3 x the plugin's first status delay)
MinJobAge=300
GresTypes=gpu
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} \
Gres=gpu:{self.gpu_type}:{self.gpus} State=UNKNOWN
PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        (CONF_DIR / "gres.conf").write_text(MARKER + "\nAutoDetect=off\n" + "".join(
            f"NodeName={self.node} Name=gpu Type={self.gpu_type} File={path}\n" for path in gpu_files))
        self._wrote_config = True

    def _start_munged(self) -> None:
        key_dir = self.state_dir / "munge"
        key_dir.mkdir(mode=0o700)
        self.munge_socket.parent.mkdir(mode=0o755)
        _run("/usr/sbin/mungekey", "--create", f"--keyfile={key_dir / 'munge.key'}")
        _run("/usr/sbin/munged", f"--socket={self.munge_socket}", f"--key-file={key_dir / 'munge.key'}",
             f"--pid-file={self.daemons[0].pid_file}", f"--log-file={self.log_dir / 'munged.log'}",
             f"--seed-file={key_dir / 'munged.seed'}")

        def munge_works() -> bool:
            cred = subprocess.run(["munge", "-n", f"--socket={self.munge_socket}"], capture_output=True, timeout=10)
            return cred.returncode == 0 and subprocess.run(
                ["unmunge", f"--socket={self.munge_socket}"], input=cred.stdout, capture_output=True,
                timeout=10).returncode == 0

        _wait_for("munged", munge_works, 20, self._log_tails)


def _wait_for_quietly(ready, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.2)


@dataclass(frozen=True)
class JobRecord:
    """One SLURM job as the controller reports it (`scontrol show job -d`)."""

    job_id: int
    workdir: str
    comment: str  # the plugin's rule_<rule>_wildcards_<wildcards>
    state: str
    start: str
    end: str
    cpus: int
    gpu_request: str  # TresPerJob (--gpus) or TresPerNode (--gres), e.g. "gres:gpu:1"; "" without a GPU request
    gpus_allocated: str  # JOB_GRES, e.g. "gpu:fake:1"; "" without GPUs
    gpu_indices: frozenset[int] = frozenset()  # seen only while the job runs

    @property
    def rule(self) -> str:
        match = re.match(r"rule_(\w+?)(_wildcards_|$)", self.comment)
        return match[1] if match else ""

    @property
    def wildcards(self) -> str:
        return self.comment.partition("_wildcards_")[2]


_FIELDS = {"job_id": r"JobId=(\d+)", "workdir": r"WorkDir=(\S*)", "comment": r"Comment=(\S*)",
           "state": r"JobState=(\S+)", "start": r"StartTime=(\S+)", "end": r"EndTime=(\S+)", "cpus": r"NumCPUs=(\d+)",
           "gpu_request": r"TresPer(?:Job|Node)=(\S+)", "gpus_allocated": r"JOB_GRES=(\S+)"}


def parse_jobs(scontrol_output: str) -> list[JobRecord]:
    jobs = []
    for line in scontrol_output.splitlines():
        if not line.startswith("JobId="):
            continue
        values = {}
        for name, pattern in _FIELDS.items():
            match = re.search(pattern, line)
            values[name] = match[1] if match and match[1] != "(null)" else ""
        values["job_id"], values["cpus"] = int(values["job_id"]), int(values["cpus"])
        indices = set()
        for spec in re.findall(r"GRES=\S*\(IDX:([\d,-]+)\)", line):
            for part in spec.split(","):
                low, _, high = part.partition("-")
                indices.update(range(int(low), int(high or low) + 1))
        jobs.append(JobRecord(**values, gpu_indices=frozenset(indices)))
    return jobs


class JobRecorder:
    """Polls the controller while a workflow runs, because a job's GPU indices are only shown while it runs."""

    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self.jobs: dict[int, JobRecord] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> JobRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.snapshot()  # final states and end times

    def snapshot(self) -> None:
        result = subprocess.run(["scontrol", "-o", "show", "job", "-d"], capture_output=True, text=True, timeout=10)
        for job in parse_jobs(result.stdout):
            seen = self.jobs.get(job.job_id)
            indices = job.gpu_indices | (seen.gpu_indices if seen else frozenset())
            self.jobs[job.job_id] = dataclasses.replace(job, gpu_indices=indices)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.snapshot()
            self._stop.wait(self.interval_s)
