"""The download utility against a local HTTP server (never the internet), and data_root."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from memnets.data import DataError, data_root, download, require
from memnets.data.download import Progress
from memnets.data.paths import ENV_VAR

PAYLOAD = b"memnets test payload\n" * 1000


@pytest.fixture()
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    (root / "file.txt").write_bytes(PAYLOAD)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_good_checksum_downloads_atomically(server, tmp_path):
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    dest = tmp_path / "data" / "ds" / "file.txt"
    assert download(f"{server}/file.txt", dest, sha256=digest) == dest
    assert dest.read_bytes() == PAYLOAD
    assert [p.name for p in dest.parent.iterdir()] == ["file.txt"]  # no temp left
    mtime = dest.stat().st_mtime_ns
    download(f"{server}/missing-but-cached.txt", dest, sha256=digest)  # cached: no fetch
    assert dest.stat().st_mtime_ns == mtime


def test_bad_checksum_raises_and_writes_nothing(server, tmp_path):
    dest = tmp_path / "file.txt"
    with pytest.raises(DataError, match="checksum mismatch.*expected sha256 0+, got"):
        download(f"{server}/file.txt", dest, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_bad_checksum_keeps_existing_file(server, tmp_path):
    dest = tmp_path / "file.txt"
    dest.write_bytes(b"old")
    with pytest.raises(DataError, match="checksum mismatch"):
        download(f"{server}/file.txt", dest, sha256="1" * 64)
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_http_error_is_clear(server, tmp_path):
    with pytest.raises(DataError, match="HTTP 404"):
        download(f"{server}/nope.txt", tmp_path / "x", sha256=None)
    assert list(tmp_path.iterdir()) == []


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv(ENV_VAR)
    root = data_root()
    shared = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if shared.is_dir():
        assert root == shared.resolve()
    else:
        assert root.parts[-2:] == ("memnets", "data")


def test_require_names_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"bAbI files not found: expected .*nothere.*get it"):
        require(tmp_path / "nothere" / "x.txt", "bAbI files", hint="get it")
    assert require(tmp_path, "tmp") == tmp_path


def test_download_shows_progress_in_a_log(server, tmp_path, capsys):
    dest = tmp_path / "file.txt"
    download(f"{server}/file.txt", dest, sha256=None, quiet=False)
    err = capsys.readouterr().err  # standard error is not a terminal under pytest
    assert "downloading" in err and "(100%)" in err and "MB in" in err

    class Log:
        def __init__(self):
            self.text = ""

        def write(self, s):
            self.text += s

        def flush(self):
            pass

        def isatty(self):
            return False

    log = Log()
    p = Progress(5 * (1 << 16), log)  # five chunks
    for _ in range(5):
        p.update(1 << 16)
    p.close()
    lines = log.text.splitlines()
    assert [line.split("(")[1] for line in lines[:3]] == ["40%)", "60%)", "80%)"]
    assert lines[-1].strip().startswith("0.3 MB in")
    quiet = Progress(None, log)  # size unknown: only the closing line
    quiet.update(10)
    assert log.text.count("\n") == 4
