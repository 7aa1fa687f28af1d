import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from biobench.atomic import LOCAL_STALE_S, atomic_path, is_temp, sweep_temps, write_text


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_successful_write_replaces_and_has_normal_permissions(tmp_path):
    target = tmp_path / "a" / "out.txt"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two" and len(list(target.parent.iterdir())) == 1
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_identical_rewrite_keeps_the_modification_time(tmp_path):
    target = tmp_path / "m.parquet"
    target.write_text("same")
    os.utime(target, (1_000_000, 1_000_000))
    with atomic_path(target, keep_mtime_if_same=True) as tmp:
        tmp.write_text("same")
    assert target.stat().st_mtime == 1_000_000
    with atomic_path(target, keep_mtime_if_same=True) as tmp:
        tmp.write_text("different")
    assert target.stat().st_mtime > 1_000_000 and target.read_text() == "different"


WRITER = """
import sys, time
from biobench.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"x" * 1000)
    print(tmp, flush=True)
    time.sleep(600)
"""


def start_writer(target):
    """A real process inside atomic_path, stopped mid-write; returns it and its temporary."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    return proc, Path(proc.stdout.readline().strip())


def test_temporaries_of_killed_writers_are_swept_and_live_ones_kept(tmp_path):
    killed, dead_tmp = start_writer(tmp_path / "a" / "dead.parquet")
    alive, live_tmp = start_writer(tmp_path / "b" / "live.parquet")
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert dead_tmp.exists() and is_temp(dead_tmp.name)
        assert sweep_temps(tmp_path).deleted == []  # both too young: the moment between mkstemp and flock
        swept = sweep_temps(tmp_path, min_age_s=0)
        assert swept.deleted == [(dead_tmp, 1000)] and swept.live == [(live_tmp, 1000)]
        assert not dead_tmp.exists() and live_tmp.exists()
    finally:
        alive.kill()
        alive.wait()
    old = time.time() - LOCAL_STALE_S - 5
    os.utime(live_tmp, (old, old))
    assert sweep_temps(tmp_path).deleted == [(live_tmp, 1000)]


def test_a_sweep_keeps_what_is_not_a_temporary_and_this_process_own_temporaries(tmp_path):
    (tmp_path / "out.parquet").write_text("artifact")
    (tmp_path / ".hidden.tmp").write_text("not ours")
    with atomic_path(tmp_path / "mine.txt") as tmp:
        tmp.write_text("writing")
        assert sweep_temps(tmp_path, min_age_s=0).live == [(tmp, 7)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden.tmp", "mine.txt", "out.parquet"]
