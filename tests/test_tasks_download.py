"""The download helpers every task uses: resumable fetches over HTTP and file://, published checksums, and archive
extraction that refuses to write outside its folder."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from biobench import download
from biobench.download import Remote, extract, fetch, fetch_and_extract
from biobench.errors import DatasetCorruptError, DatasetMissingError
from task_fixtures import write_tar, write_zip

BLOB = bytes(range(256)) * 400  # 100 KiB


def md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


@pytest.fixture
def blob_file(tmp_path):
    path = tmp_path / "source" / "blob.bin"
    path.parent.mkdir()
    path.write_bytes(BLOB)
    return path


# file:// ---------------------------------------------------------------------------------------------------------


def test_fetch_verifies_and_renames(blob_file, tmp_path):
    out = fetch(Remote(blob_file.as_uri(), "blob.bin", md5(BLOB)), tmp_path / "d/blob.bin")
    assert out.read_bytes() == BLOB and not (tmp_path / "d/blob.bin.part").exists()


def test_checksum_mismatch_names_the_source_and_leaves_nothing(blob_file, tmp_path):
    remote = Remote(blob_file.as_uri(), "blob.bin", "sha256:" + "ab" * 32)
    with pytest.raises(DatasetCorruptError, match=r"sha256 is [0-9a-f]{64}, expected abab.* as published for "
                                                  r"file://.*blob.bin.*delete it and run the download again"):
        fetch(remote, tmp_path / "d/blob.bin")
    assert not list((tmp_path / "d").iterdir())


def test_half_downloaded_part_is_resumed_with_a_range_request(blob_file, tmp_path):
    part = tmp_path / "d/blob.bin.part"
    part.parent.mkdir()
    part.write_bytes(b"\xff" * 1000)  # not the source's first bytes: only a resumed download keeps them
    out = fetch(Remote(blob_file.as_uri(), "blob.bin"), tmp_path / "d/blob.bin")
    assert out.read_bytes() == b"\xff" * 1000 + BLOB[1000:]


def test_resumed_download_that_fails_its_checksum_is_discarded(blob_file, tmp_path):
    part = tmp_path / "d/blob.bin.part"
    part.parent.mkdir()
    part.write_bytes(b"\xff" * 1000)
    with pytest.raises(DatasetCorruptError, match="md5"):
        fetch(Remote(blob_file.as_uri(), "blob.bin", md5(BLOB)), tmp_path / "d/blob.bin")
    assert not part.exists()
    assert fetch(Remote(blob_file.as_uri(), "blob.bin", md5(BLOB)), tmp_path / "d/blob.bin").read_bytes() == BLOB


def test_complete_part_is_kept(blob_file, tmp_path):
    part = tmp_path / "d/blob.bin.part"
    part.parent.mkdir()
    part.write_bytes(BLOB)  # the range request past the end answers 416; the checksum decides
    assert fetch(Remote(blob_file.as_uri(), "blob.bin", md5(BLOB)), tmp_path / "d/blob.bin").read_bytes() == BLOB


def test_verified_file_is_reused_and_a_damaged_one_replaced(blob_file, tmp_path):
    target = tmp_path / "blob.bin"
    target.write_bytes(BLOB)
    assert fetch(Remote((tmp_path / "gone").as_uri(), "blob.bin", md5(BLOB)), target) == target  # no fetch
    target.write_bytes(BLOB[:-1] + b"\x00")
    assert fetch(Remote(blob_file.as_uri(), "blob.bin", md5(BLOB)), target).read_bytes() == BLOB


def test_missing_source_file_names_the_url_and_the_fixes(tmp_path):
    with pytest.raises(DatasetMissingError, match=r"could not download file://.*nothing.bin.*No such file.*prepare.*"
                                                  r"mirror.*place the file at"):
        fetch(Remote((tmp_path / "nothing.bin").as_uri(), "nothing.bin"), tmp_path / "d/nothing.bin")


def test_mirror_replaces_the_source_location(tmp_path):
    remote = Remote("https://example.org/a/b/file name.zip", "sub/file name.zip", "md5:00")
    assert remote.located("") == remote
    assert remote.located("https://mirror.example/x/").url == "https://mirror.example/x/sub/file%20name.zip"
    local = remote.located(str(tmp_path))
    assert local.url == tmp_path.as_uri() + "/sub/file%20name.zip" and local.checksum == "md5:00"


# HTTP --------------------------------------------------------------------------------------------------------------


class _BlobServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _BlobHandler)
        self.drops, self.honour_range, self.ranges = 0, True, []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _BlobHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        server = self.server
        if self.path != "/blob.bin":
            self.send_error(404)
            return
        asked = self.headers.get("Range")
        server.ranges.append(asked)
        match = re.fullmatch(r"bytes=(\d+)-", asked or "")
        start = int(match[1]) if match and server.honour_range else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}")
        self.send_header("Content-Length", str(len(BLOB) - start))
        self.end_headers()
        body = BLOB[start:]
        if server.drops:
            server.drops -= 1
            body = body[: len(body) // 3]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr(download, "RETRY_WAIT_S", 0.0)
    srv = _BlobServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_dropped_connection_is_resumed_where_it_stopped(server, tmp_path):
    server.drops = 2
    out = fetch(Remote(f"{server.url}/blob.bin", "blob.bin", md5(BLOB)), tmp_path / "blob.bin")
    assert out.read_bytes() == BLOB
    assert server.ranges[0] is None and all(r and r.startswith("bytes=") for r in server.ranges[1:])
    assert len(server.ranges) == 3


def test_server_without_range_support_restarts_from_zero(server, tmp_path):
    server.honour_range = False
    part = tmp_path / "blob.bin.part"
    part.write_bytes(b"\xff" * 500)
    assert fetch(Remote(f"{server.url}/blob.bin", "blob.bin"), tmp_path / "blob.bin").read_bytes() == BLOB


def test_not_found_is_not_retried(server, tmp_path):
    with pytest.raises(DatasetMissingError, match=r"could not download http://.*/missing.bin: HTTP 404"):
        fetch(Remote(f"{server.url}/missing.bin", "missing.bin"), tmp_path / "missing.bin")


def test_connection_that_keeps_dropping_gives_up_and_keeps_the_bytes(server, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "RETRIES", 1)
    server.drops = 5
    with pytest.raises(DatasetMissingError, match=r"bytes received so far are kept in .*blob.bin.part; running "
                                                  r"again resumes"):
        fetch(Remote(f"{server.url}/blob.bin", "blob.bin"), tmp_path / "blob.bin")
    server.drops = 0
    assert fetch(Remote(f"{server.url}/blob.bin", "blob.bin", md5(BLOB)), tmp_path / "blob.bin").read_bytes() == BLOB


# Archives ----------------------------------------------------------------------------------------------------------


def tar_with(path, *infos):
    with tarfile.open(path, "w:gz") as tar:
        for info, data in infos:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name, data=b"x", **fields):
    info = tarfile.TarInfo(name)
    info.size = len(data) if data is not None else 0
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def test_tar_and_zip_unpack(tmp_path):
    files = {"top/a.txt": b"a", "top/sub/b.txt": b"bb"}
    for archive in (write_tar(tmp_path / "x.tar.gz", files), write_zip(tmp_path / "x.zip", files)):
        into = tmp_path / f"out-{archive.name}"
        assert extract(archive, into) == 2
        assert (into / "top/sub/b.txt").read_bytes() == b"bb"


@pytest.mark.parametrize(("name", "why"), [("../evil.txt", "contains '..'"), ("ok/../../evil.txt", "contains '..'"),
                                           ("/tmp/biobench-evil-test.txt", "has an absolute path")])
def test_member_leaving_the_folder_is_refused(tmp_path, name, why):
    for archive in (tar_with(tmp_path / "bad.tar.gz", member("fine.txt"), member(name)),
                    write_zip(tmp_path / "bad.zip", {"fine.txt": b"x", name: b"x"})):
        into = tmp_path / "into" / archive.name
        with pytest.raises(DatasetCorruptError, match=f"member '{re.escape(name)}' {why}; refusing"):
            extract(archive, into)
        assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "into/evil.txt").exists()
    assert not Path("/tmp/biobench-evil-test.txt").exists()


@pytest.mark.parametrize(("link", "why"), [
    (dict(type=tarfile.SYMTYPE, linkname="../../outside"), "outside the target folder"),
    (dict(type=tarfile.SYMTYPE, linkname="/etc/passwd"), "absolute path"),
    (dict(type=tarfile.LNKTYPE, linkname="../outside"), "outside the target folder"),
])
def test_link_pointing_outside_is_refused(tmp_path, link, why):
    archive = tar_with(tmp_path / "links.tar.gz", member("dir/link", None, **link))
    with pytest.raises(DatasetCorruptError, match=why):
        extract(archive, tmp_path / "into")
    assert not (tmp_path / "into/dir/link").exists()


def test_links_that_stay_inside_are_kept(tmp_path):
    archive = tar_with(tmp_path / "through.tar.gz",
                       member("inner", None, type=tarfile.SYMTYPE, linkname="sub"),
                       member("sub", None, type=tarfile.DIRTYPE),
                       member("escape", None, type=tarfile.SYMTYPE, linkname="."),
                       member("inner/ok.txt"))
    extract(archive, tmp_path / "into")
    assert (tmp_path / "into/sub/ok.txt").exists() and (tmp_path / "into/inner").is_symlink()


def test_device_files_are_refused(tmp_path):
    archive = tar_with(tmp_path / "dev.tar.gz", member("dev/null", None, type=tarfile.CHRTYPE))
    with pytest.raises(DatasetCorruptError, match="device file or pipe"):
        extract(archive, tmp_path / "into")


def test_symlink_in_zip_is_refused(tmp_path):
    info = zipfile.ZipInfo("link")
    info.external_attr = 0o120777 << 16
    with zipfile.ZipFile(tmp_path / "l.zip", "w") as zf:
        zf.writestr(info, "../../etc/passwd")
    with pytest.raises(DatasetCorruptError, match="symbolic link"):
        extract(tmp_path / "l.zip", tmp_path / "into")


@pytest.mark.parametrize("name", ["x.tar.gz", "x.zip"])
def test_truncated_archive_is_reported_as_damaged(tmp_path, name):
    files = {f"f{i}.bin": bytes(range(256)) * 40 + bytes([i]) for i in range(20)}
    archive = (write_tar if name.endswith(".tar.gz") else write_zip)(tmp_path / name, files)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DatasetCorruptError, match=r"damaged or incomplete.*download again"):
        extract(archive, tmp_path / "into")


def test_corrupted_zip_member_fails_its_crc(tmp_path):
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a.bin", b"A" * 5000)
    data = bytearray(archive.read_bytes())
    data[2000] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(DatasetCorruptError, match="damaged or incomplete"):
        extract(archive, tmp_path / "into")


def test_fetch_and_extract_runs_once_and_removes_the_archive(tmp_path):
    archive = write_tar(tmp_path / "src/data.tar.gz", {"data/x.txt": b"x"})
    remote = Remote(archive.as_uri(), "data.tar.gz", md5(archive.read_bytes()))
    fetch_and_extract(remote, tmp_path / "dl", tmp_path / "out")
    assert (tmp_path / "out/data/x.txt").read_bytes() == b"x" and not (tmp_path / "dl/data.tar.gz").exists()
    archive.unlink()
    fetch_and_extract(remote, tmp_path / "dl", tmp_path / "out")  # the marker: nothing is fetched again


# Early ends, recorded sha256, several locations ----------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    """Answers each path with a function of the request handler; records the headers of every request."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _RouteHandler)
        self.routes, self.seen = {}, []

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.server_address[1]}"


class _RouteHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.seen.append((self.path, dict(self.headers)))
        self.server.routes.get(self.path, lambda h: h.send_error(404))(self)

    def log_message(self, *args):
        pass


def close_delimited(body: bytes):
    """200 with neither Content-Length nor chunks: the end of the connection is the end of the body."""
    def answer(handler):
        handler.send_response(200)
        handler.end_headers()
        handler.wfile.write(body)
        handler.close_connection = True
    return answer


def chunked_cut_short(handler):
    handler.protocol_version = "HTTP/1.1"
    handler.send_response(200)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    for block in (BLOB[:4000], BLOB[4000:8000]):
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
    handler.close_connection = True  # no terminating zero-length chunk


def shorter_than_its_length(handler):
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(BLOB)))
    handler.end_headers()
    handler.wfile.write(BLOB[:5000])
    handler.close_connection = True


def status(code: int):
    return lambda handler: handler.send_error(code)


def redirect(location: str):
    def answer(handler):
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return answer


@pytest.fixture
def servers(monkeypatch):
    monkeypatch.setattr(download, "RETRY_WAIT_S", 0.0)
    monkeypatch.setattr(download, "RETRIES", 1)
    started = []

    def start():
        srv = _Server()
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.shutdown()
        srv.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_close_delimited_download_is_recorded_and_a_later_different_copy_refused(servers, tmp_path):
    srv = servers()
    recorded = download.Recorded(tmp_path / "record/blob.recorded-sha256.json")
    srv.routes["/blob.bin"] = close_delimited(BLOB[:7000])  # ended early: nothing in HTTP tells
    target = tmp_path / "data/blob.bin"
    fetch(Remote(f"{srv.url()}/blob.bin", "blob.bin"), target, recorded)
    assert target.read_bytes() == BLOB[:7000]
    entry = recorded.entries()["blob.bin"]
    assert entry["checksum"] == f"sha256:{sha(BLOB[:7000])}" and entry["source"] == f"{srv.url()}/blob.bin"

    target.unlink()  # the data folder deleted to download again; the record stays
    srv.routes["/blob.bin"] = close_delimited(BLOB)
    with pytest.raises(DatasetCorruptError) as err:
        fetch(Remote(f"{srv.url()}/blob.bin", "blob.bin"), target, recorded)
    message = str(err.value)
    assert f"sha256 is {sha(BLOB)}, expected {sha(BLOB[:7000])} as recorded in {recorded.path}" in message
    assert "run the download again" in message and "delete the 'blob.bin' entry" in message
    assert not target.exists() and not target.with_name("blob.bin.part").exists()

    mirror = tmp_path / "mirror/blob.bin"  # a copy from a mirror is held to the same record
    mirror.parent.mkdir()
    mirror.write_bytes(BLOB)
    with pytest.raises(DatasetCorruptError, match=f"expected {sha(BLOB[:7000])}"):
        fetch(Remote(f"{srv.url()}/blob.bin", "blob.bin").located(str(mirror.parent)), target, recorded)
    mirror.write_bytes(BLOB[:7000])
    assert fetch(Remote(f"{srv.url()}/blob.bin", "blob.bin").located(str(mirror.parent)), target,
                 recorded).read_bytes() == BLOB[:7000]


def test_file_already_in_place_is_held_to_the_record(tmp_path):
    recorded = download.Recorded(tmp_path / "rec.json")
    recorded.confirm("blob.bin", f"sha256:{sha(BLOB)}", "first", "https://example.org/blob.bin")
    target = tmp_path / "blob.bin"
    target.write_bytes(BLOB[:10])
    source = tmp_path / "src/blob.bin"
    source.parent.mkdir()
    source.write_bytes(BLOB)
    assert fetch(Remote(source.as_uri(), "blob.bin"), target, recorded).read_bytes() == BLOB  # replaced


def test_unreadable_record_names_itself_and_the_fix(tmp_path):
    (tmp_path / "rec.json").write_text("{\"blob.bin\": {\"chec")
    with pytest.raises(DatasetCorruptError, match=r"rec.json .*not valid JSON.*Delete it"):
        download.Recorded(tmp_path / "rec.json").entries()


@pytest.mark.parametrize(("route", "why"), [
    (chunked_cut_short, "the connection closed in the middle of a chunked transfer, before its last chunk"),
    (shorter_than_its_length, f"the connection closed after 5000 of {len(BLOB)} bytes"),
])
def test_transfer_that_ends_early_is_an_error_and_never_the_file(servers, tmp_path, route, why):
    srv = servers()
    srv.routes["/blob.bin"] = route
    recorded = download.Recorded(tmp_path / "rec.json")
    with pytest.raises(DatasetMissingError, match=f"could not download {srv.url()}/blob.bin: {why}"):
        fetch(Remote(f"{srv.url()}/blob.bin", "blob.bin"), tmp_path / "blob.bin", recorded)
    assert not (tmp_path / "blob.bin").exists() and not recorded.path.exists()
    assert len(srv.seen) == 2  # retried once (RETRIES = 1), then given up


def test_locations_are_tried_in_order_with_the_same_checks(servers, tmp_path):
    srv = servers()
    srv.routes.update({"/a": status(404), "/b": status(500), "/c": close_delimited(BLOB), "/d": close_delimited(b"x")})
    remote = Remote(f"{srv.url()}/a", "blob.bin", md5(BLOB), fallbacks=(f"{srv.url()}/b", f"{srv.url()}/c"))
    assert fetch(remote, tmp_path / "blob.bin").read_bytes() == BLOB
    assert [path for path, _ in srv.seen] == ["/a", "/b", "/b", "/c"]  # 404 is final, 500 retried once

    wrong_first = Remote(f"{srv.url()}/d", "blob.bin", md5(BLOB), fallbacks=(f"{srv.url()}/c",))
    assert fetch(wrong_first, tmp_path / "again/blob.bin").read_bytes() == BLOB  # a bad copy: the next location


def test_when_every_location_fails_the_error_names_each_attempt_and_the_options(servers, tmp_path):
    srv = servers()
    srv.routes.update({"/a": status(404), "/b": status(500), "/c": chunked_cut_short})
    remote = Remote(f"{srv.url()}/a", "blob.bin", fallbacks=(f"{srv.url()}/b", f"{srv.url()}/c"))
    with pytest.raises(DatasetMissingError) as err:
        fetch(remote, tmp_path / "blob.bin")
    message = str(err.value)
    assert "could not download blob.bin from any of its 3 locations:" in message
    for line in (f"{srv.url()}/a: HTTP 404", f"{srv.url()}/b: HTTP 500", f"{srv.url()}/c: the connection closed"):
        assert f"\n  {line}" in message
    assert "`mirror:`" in message and "`datadir:`" in message
    assert f"place the file at {tmp_path / 'blob.bin'}" in message
    assert not (tmp_path / "blob.bin").exists()


def test_a_mirror_is_the_only_location_tried(tmp_path):
    remote = Remote("https://a.example/f.zip", "f.zip", fallbacks=("https://b.example/f.zip",))
    assert remote.located(str(tmp_path)).locations == (tmp_path.as_uri() + "/f.zip",)
    with pytest.raises(DatasetMissingError, match=r"could not download file://.*f.zip: .*No such file"):
        fetch(remote.located(str(tmp_path)), tmp_path / "out/f.zip")


def test_archive_that_does_not_unpack_is_dropped_from_the_record(servers, tmp_path):
    srv = servers()
    archive = write_tar(tmp_path / "src/data.tar.gz", {f"data/{i}.bin": bytes([i]) * 3000 for i in range(30)})
    whole = archive.read_bytes()
    srv.routes["/data.tar.gz"] = close_delimited(whole[: len(whole) // 2])
    recorded = download.Recorded(tmp_path / "rec.json")
    remote = Remote(f"{srv.url()}/data.tar.gz", "data.tar.gz")
    with pytest.raises(DatasetCorruptError, match="damaged or incomplete"):
        fetch_and_extract(remote, tmp_path / "dl", tmp_path / "out", recorded)
    assert "data.tar.gz" not in recorded.entries()
    (tmp_path / "dl/data.tar.gz").unlink()
    srv.routes["/data.tar.gz"] = close_delimited(whole)
    fetch_and_extract(remote, tmp_path / "dl", tmp_path / "out", recorded)
    assert recorded.entries()["data.tar.gz"]["checksum"] == f"sha256:{sha(whole)}"


# The Hugging Face token ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "sent"), [
    ("https://huggingface.co/datasets/x/resolve/main/f", True),
    ("https://HuggingFace.co/f", True),
    ("https://cdn-lfs.huggingface.co/f", True),
    ("https://huggingface.co:443/f", True),
    ("http://huggingface.co/f", False),
    ("https://evilhuggingface.co/f", False),
    ("https://huggingface.co.evil.com/f", False),
    ("https://huggingface.co@evil.com/f", False),
    ("https://cas-bridge.xethub.hf.co/f", False),
    ("file:///huggingface.co/f", False),
])
def test_token_goes_only_to_huggingface_over_https(url, sent):
    assert download.sends_token(url) is sent


@pytest.mark.parametrize(("target", "kept"), [
    ("https://huggingface.co/b", True),
    ("https://huggingface.co:443/b", True),
    ("/relative", True),
    ("http://huggingface.co/b", False),
    ("https://huggingface.co:8443/b", False),
    ("https://cdn-lfs.huggingface.co/b", False),
    ("https://example.org/b", False),
])
def test_redirect_keeps_the_token_only_on_the_same_origin(target, kept):
    request = urllib.request.Request("https://huggingface.co/a", headers={"Authorization": "Bearer t", "Range": "x"})
    new = download._RedirectHandler().redirect_request(request, None, 302, "Found", {}, urllib.parse.urljoin(
        request.full_url, target))
    assert new.has_header("Authorization") is kept and new.get_header("Range") == "x"


def test_token_is_not_sent_across_hosts_or_ports_and_never_logged(servers, tmp_path, monkeypatch, caplog):
    token = "hf_sekrit_token_5p1d3r"
    monkeypatch.setenv("HF_TOKEN", token)
    first, second = servers(), servers()
    monkeypatch.setattr(download, "sends_token", lambda url: url.startswith(first.url()))  # the first stands in
    first.routes.update({                                                                  # for huggingface.co
        "/same": redirect("/final"), "/final": close_delimited(BLOB),
        "/other-host": redirect(f"{second.url('localhost')}/final"),
        "/other-port": redirect(f"{second.url()}/final"),
        "/failing": redirect(f"{second.url('localhost')}/error"),
    })
    second.routes.update({"/final": close_delimited(BLOB), "/error": status(500)})

    for name in ("same", "other-host", "other-port"):
        fetch(Remote(f"{first.url()}/{name}", "blob.bin"), tmp_path / name)
    by_first = {path: headers for path, headers in first.seen}
    assert by_first["/same"]["Authorization"] == by_first["/final"]["Authorization"] == f"Bearer {token}"
    assert by_first["/other-host"]["Authorization"] == f"Bearer {token}"
    assert second.seen and all("Authorization" not in headers for _, headers in second.seen)

    caplog.set_level("DEBUG")
    with pytest.raises(DatasetMissingError) as err:
        fetch(Remote(f"{first.url()}/failing", "blob.bin"), tmp_path / "failing")
    assert "HTTP 500" in str(err.value) and caplog.records
    assert token not in str(err.value) and token not in caplog.text
