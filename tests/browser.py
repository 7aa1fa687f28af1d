"""Headless Chromium with the network blocked: open a local HTML file and return its rendered DOM, a screenshot and
the network requests the page tried to make (every one of them is refused)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from debian import apt_install

INSTALL = "apt-get update && apt-get install -y chromium"
EXECUTABLES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    # The network is blocked: every request goes to a proxy on a closed port, and no host name resolves.
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


class ChromiumMissing(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class PageLoad:
    dom: str  # document.documentElement.outerHTML after scripts ran
    screenshot: Path  # PNG of the first `height` pixels at `width`
    requests: tuple[str, ...]  # URLs the page itself tried to fetch over the network


def find_chromium() -> str:
    """The Chromium executable ($BIOBENCH_CHROMIUM, else the first on PATH). When there is none and the tests run
    as root on Debian/Ubuntu (as CI does), Debian's chromium is installed; otherwise raises with the command."""
    candidates = [os.environ.get("BIOBENCH_CHROMIUM", ""), *EXECUTABLES]
    for attempt in range(2):
        for name in candidates:
            path = shutil.which(name) if name else None
            if path:
                return path
        if attempt == 0 and os.geteuid() == 0 and shutil.which("apt-get"):
            apt_install(["chromium"])
    raise ChromiumMissing(
        f"headless Chromium is needed to check the report but none of {', '.join(EXECUTABLES)} is on PATH; "
        f"install it with `{INSTALL}` (Debian/Ubuntu), or set BIOBENCH_CHROMIUM to a Chromium/Chrome executable."
    )


def open_page(
    html: Path, screenshot: Path, *, width: int = 1366, height: int = 768, budget_ms: int = 8000, timeout_s: int = 120
) -> PageLoad:
    chromium = find_chromium()
    url = Path(html).resolve().as_uri()
    common = [*FLAGS, f"--window-size={width},{height}", f"--virtual-time-budget={budget_ms}"]
    with tempfile.TemporaryDirectory(prefix="biobench-chromium-") as tmp:
        netlog = Path(tmp) / "netlog.json"
        dom, _ = _run_together(
            [
                [chromium, *common, f"--user-data-dir={tmp}/dom", f"--log-net-log={netlog}", "--dump-dom", url],
                [chromium, *common, f"--user-data-dir={tmp}/shot", f"--screenshot={Path(screenshot).resolve()}", url],
            ],
            timeout_s,
        )
        requests = page_requests(netlog)
    if not Path(screenshot).is_file():
        raise RuntimeError(f"Chromium wrote no screenshot to {screenshot}")
    return PageLoad(dom=dom, screenshot=Path(screenshot), requests=requests)


def page_requests(netlog: Path) -> tuple[str, ...]:
    """URLs requested on behalf of a file:// page (Chromium's own background requests are left out)."""
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return tuple(
        event["params"]["url"]
        for event in log["events"]
        if event["type"] == start_job
        and "url" in event.get("params", {})
        and str(event["params"].get("network_isolation_key", "")).startswith("file://")
    )


def _run_together(commands: list[list[str]], timeout_s: int) -> list[str]:
    """Run the commands at the same time; return their stdouts, or raise with the stderr of one that failed."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    try:
        outputs = [p.communicate(timeout=timeout_s) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outputs):
        if p.returncode != 0:
            raise RuntimeError(f"Chromium exited with {p.returncode}: {err[-2000:]}")
    return [out for out, _ in outputs]
