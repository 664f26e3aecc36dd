"""Missing PTB / Tiny Shakespeare / SST files are fetched with the engine's
checked download — tested against a local HTTP server on 127.0.0.1 only."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import pytest

import memnets.tasks.language_model as lm_task
import memnets.tasks.sentiment as sst_task
from memnets.data import DataError
from memnets.tasks.language_model import (
    CharLanguageModelTask,
    LMDataConfig,
    WordLanguageModelTask,
)
from memnets.tasks.sentiment import SentimentTask, SSTDataConfig

FILES = {
    "ptb.train.txt": " the cat sat \n the <unk> ran \n",
    "ptb.valid.txt": " the cat \n",
    "ptb.test.txt": " cat ran \n",
    "input.txt": "ROMEO: a b c\n" * 20,
    "stsa.binary.train": "1 a good film\n0 a bad film\n",
    "stsa.binary.dev": "1 good\n",
    "stsa.binary.test": "0 bad\n",
}


@pytest.fixture()
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    for name, text in FILES.items():
        (root / name).write_text(text)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def sha(name: str) -> str:
    return hashlib.sha256(FILES[name].encode()).hexdigest()


def test_ptb_files_are_downloaded_when_missing(server, tmp_path, monkeypatch):
    monkeypatch.setattr(lm_task, "PTB_URL", server + "/ptb.{split}.txt")
    monkeypatch.setattr(lm_task, "PTB_SHA256", {s: sha(f"ptb.{s}.txt")
                                                 for s in ("train", "valid", "test")})
    task = WordLanguageModelTask(LMDataConfig(), tmp_path)
    task.setup()
    assert (tmp_path / "ptb" / "ptb.train.txt").read_text() == FILES["ptb.train.txt"]
    assert len(task.vocab) == 6 and task.ids("test").tolist() == [3, 4, 0]


def test_wrong_checksum_is_a_data_error_and_leaves_no_file(server, tmp_path, monkeypatch):
    monkeypatch.setattr(lm_task, "PTB_URL", server + "/ptb.{split}.txt")
    monkeypatch.setattr(lm_task, "PTB_SHA256", {s: "0" * 64 for s in ("train", "valid", "test")})
    with pytest.raises(DataError, match="checksum"):
        WordLanguageModelTask(LMDataConfig(), tmp_path).setup()
    assert not (tmp_path / "ptb" / "ptb.train.txt").exists()


def test_no_download_when_disabled_names_the_missing_file(tmp_path):
    with pytest.raises(DataError, match="ptb.train.txt"):
        WordLanguageModelTask(LMDataConfig(download=False), tmp_path).setup()


def test_shakespeare_is_downloaded_when_missing(server, tmp_path, monkeypatch):
    monkeypatch.setattr(lm_task, "SHAKESPEARE_URL", server + "/input.txt")
    monkeypatch.setattr(lm_task, "SHAKESPEARE_SHA256", sha("input.txt"))
    task = CharLanguageModelTask(LMDataConfig(), tmp_path)
    task.setup()
    assert (tmp_path / "tinyshakespeare" / "input.txt").is_file()
    assert "R" in task.vocab


def test_sst_sentences_are_downloaded_when_missing(server, tmp_path, monkeypatch):
    monkeypatch.setattr(sst_task, "SST_URLS", {"sentences": server + "/stsa.{name}"})
    monkeypatch.setattr(sst_task, "SST_SHA256", {
        f"sentences/stsa.binary.{s}": sha(f"stsa.binary.{s}") for s in ("train", "dev", "test")})
    task = SentimentTask(SSTDataConfig(classes=2), tmp_path)
    task.setup()
    assert (tmp_path / "sst" / "sentences" / "stsa.binary.dev").read_text() == "1 good\n"
    assert [y for _, y in task.dataset("train")] == [1, 0]
