import os
import stat

import pytest

from biobench.atomic import atomic_path, write_text


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
