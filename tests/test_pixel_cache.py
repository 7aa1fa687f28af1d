"""The pixel cache's size limit counts entries being written, and sweeps those whose writer died."""

from __future__ import annotations

import os
import time

from biobench.atomic import atomic_path
from biobench.pixel_cache import PixelCache

MB = 2**20


def test_make_room_counts_live_temporaries_and_sweeps_dead_ones(tmp_path):
    cache = PixelCache(tmp_path, max_gb=3 * MB / 2**30)
    cache.path("old").write_bytes(b"\0" * MB)
    dead = tmp_path / ".left.npy.abcd1234.tmp"  # no writer holds its lock: a job killed mid-write
    dead.write_bytes(b"\0" * MB)
    long_ago = time.time() - 3600
    os.utime(dead, (long_ago, long_ago))
    with atomic_path(cache.path("being-written")) as live:
        live.write_bytes(b"\0" * 2 * MB)
        os.utime(live, (long_ago, long_ago))
        assert cache.make_room(MB)  # 2 MB being written + 1 MB: "old" must go, the live temporary stays
        assert not dead.exists() and not cache.path("old").exists() and live.exists()
        assert not cache.make_room(MB + 1)  # never fits beside the 2 MB being written
    assert cache.make_room(3 * MB - 100)
