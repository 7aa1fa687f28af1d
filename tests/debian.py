"""Installing Debian packages that tests need (as root, with apt-get), without starting any service."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def apt_install(packages: list[str]) -> None:
    """apt-get install --no-install-recommends; raises CalledProcessError with apt's output on failure."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Without systemd, package scripts would try to start system-wide daemons (munged, slurmctld, ...);
    # policy-rc.d answering 101 forbids that. Container images usually ship one already.
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    if own_policy:
        policy.write_text("#!/bin/sh\n# biobench tests/debian.py: no service starts during apt-get\nexit 101\n")
        policy.chmod(0o755)
    try:
        for cmd, timeout in ((["apt-get", "update", "-qq"], 300),
                             (["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], 1200)):
            subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=True)
    finally:
        if own_policy:
            policy.unlink()
