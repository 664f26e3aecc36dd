"""Speech corpora: the documented splits on small folders made here and on the real
data, the connected-digit composition against its definition, manifests and their
errors, and corpus downloads from a local HTTP server (never the internet)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import struct
import threading
import wave
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA

from memnets.data.audio import read_audio
from memnets.data.speech import (
    CORPORA,
    DIGITS,
    an4_corpus,
    corpus_files,
    fetch_corpus,
    fsdd_connected,
    fsdd_corpus,
    listing_sha256,
    load_waveform,
    read_manifest,
    yesno_corpus,
)
from memnets.errors import DataError


def write_wav(path: Path, samples: list[int], rate: int = 8000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    return path


# ---------------------------------------------------------------------- yesno


def test_yesno_split_is_kaldis_halves_with_dev_from_the_training_half(tmp_path):
    names = [f"{i:04b}" for i in range(10)]  # 10 files, sorted
    for n in names:
        write_wav(tmp_path / "yesno" / "waves_yesno" / f"{'_'.join(n)}.wav", [0] * 10)
    (tmp_path / "yesno" / "waves_yesno" / "README").write_text("not a recording")
    c = yesno_corpus(tmp_path / "yesno")
    ids = [u.id for s in ("train", "dev", "test") for u in c[s]]
    assert ids == ["_".join(n) for n in names]  # every file once, in name order
    assert [len(c[s]) for s in ("train", "dev", "test")] == [4, 1, 5]  # first half: train + dev
    assert c["train"][1].text == "no no no yes"  # 0001
    assert c["test"][4].text == "yes no no yes"  # 1001


def test_yesno_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"yesno corpus not found.*waves_yesno"):
        yesno_corpus(tmp_path / "nothing")
    for n in ("0_1", "1_0", "1_x_0"):
        write_wav(tmp_path / "waves_yesno" / f"{n}.wav", [0] * 10)
    with pytest.raises(DataError, match=r"1_x_0\.wav: expected a yesno file name of 0s and 1s"):
        yesno_corpus(tmp_path)


# ---------------------------------------------------------------------- fsdd


def fake_fsdd(root: Path, speakers=("ann", "bob"), indices=(0, 1, 5, 6, 10, 11, 12)) -> Path:
    """FSDD-named recordings whose samples tell their digit, speaker and index."""
    for d in range(10):
        for s, speaker in enumerate(speakers):
            for i in indices:
                n = 50 + 10 * d + i  # a length of its own
                write_wav(root / "recordings" / f"{d}_{speaker}_{i}.wav",
                          [1000 * d + 100 * s + i] * n)
    return root


def test_fsdd_isolated_uses_the_official_test_indices(tmp_path):
    c = fsdd_corpus(fake_fsdd(tmp_path))
    index = {s: {int(u.id.split("_")[2]) for u in c[s]} for s in c}
    assert index == {"test": {0, 1}, "dev": {5, 6}, "train": {10, 11, 12}}
    assert all(u.text == DIGITS[int(u.id[0])] for s in c for u in c[s])
    assert len(c["train"]) == 10 * 2 * 3


def test_connected_digits_follow_the_documented_composition(tmp_path):
    folder = fake_fsdd(tmp_path)
    counts = {"train": 200, "dev": 20, "test": 30}
    c = fsdd_connected(folder, counts, seed=3, gap_min=0.05, gap_max=0.2)
    assert fsdd_connected(folder, counts, seed=3, gap_min=0.05, gap_max=0.2) == c
    other = fsdd_connected(folder, counts, seed=4, gap_min=0.05, gap_max=0.2)
    assert [u.text for u in other["train"]] != [u.text for u in c["train"]]
    allowed = {"train": {10, 11, 12}, "dev": {5, 6}, "test": {0, 1}}
    lengths, repeats = set(), 0
    for split, utts in c.items():
        assert len(utts) == counts[split]
        for u in utts:
            stems = [p.audio.stem.split("_") for p in u.parts]
            assert {int(i) for _, _, i in stems} <= allowed[split]  # this split's recordings
            assert len({s for _, s, _ in stems}) == 1  # one speaker per sequence
            assert u.text == " ".join(DIGITS[int(d)] for d, _, _ in stems)
            assert all(0.05 <= p.gap <= 0.2 for p in u.parts) and 0.05 <= u.tail <= 0.2
            lengths.add(len(u.parts))
            repeats += any(a == b for a, b in zip(u.text.split(), u.text.split()[1:]))
    assert lengths == set(range(1, 8)) and repeats > 0


def test_a_composed_waveform_is_its_parts_between_noisy_pauses(tmp_path):
    folder = fake_fsdd(tmp_path)
    u = fsdd_connected(folder, {"test": 5}, seed=0, gap_noise=0.01)["test"][4]
    x = load_waveform(u, 8000)
    torch.testing.assert_close(load_waveform(u, 8000), x)  # seeded pauses
    pos = 0
    for p in u.parts:
        gap = round(p.gap * 8000)
        pause = x[pos:pos + gap]
        assert pause.abs().max() < 0.1 and 0.005 < float(pause.std()) < 0.02
        part = read_audio(p.audio)[0]
        assert torch.equal(x[pos + gap:pos + gap + len(part)], part)
        pos += gap + len(part)
    assert len(x) == pos + round(u.tail * 8000)


# ---------------------------------------------------------------------- manifests and an4


def test_manifest_reads_relative_paths_and_nemo_keys(tmp_path):
    write_wav(tmp_path / "audio" / "a.wav", [1, 2, 3])
    write_wav(tmp_path / "b.wav", [4, 5])
    lines = [json.dumps({"audio": "audio/a.wav", "text": "Hello   World", "speaker": 3}), "",
             json.dumps({"audio_filepath": str(tmp_path / "b.wav"), "text": ""})]
    (tmp_path / "m.json").write_text("\n".join(lines) + "\n")
    utts = read_manifest(tmp_path / "m.json")
    assert [(u.audio, u.text) for u in utts] == [(tmp_path / "audio" / "a.wav", "hello world"),
                                                 (tmp_path / "b.wav", "")]
    assert utts[1].where.endswith("m.json:3")


@pytest.mark.parametrize("line, match", [
    ('{"audio": "a.wav", "text": ', r"m\.json:2: expected a JSON object per line"),
    ('["a.wav", "hi"]',
     r"m\.json:2: expected a JSON object per line \(a JSON-lines manifest\), got list"),
    ('{"text": "hi"}', r"m\.json:2: expected an \"audio\" path"),
    ('{"audio": "a.wav", "text": 5}', r"m\.json:2: expected a \"text\" string"),
    ('{"audio": "gone.wav", "text": "hi"}', r"m\.json:2: audio file .*gone\.wav not found "
                                            r"\(relative paths are taken from the manifest"),
])
def test_manifest_errors_name_the_file_and_line(tmp_path, line, match):
    write_wav(tmp_path / "a.wav", [1])
    (tmp_path / "m.json").write_text(json.dumps({"audio": "a.wav", "text": "ok"}) + "\n" + line)
    with pytest.raises(DataError, match=match):
        read_manifest(tmp_path / "m.json")


def test_an4_matches_nemo_paths_by_file_name(tmp_path):
    rows = {"train": [f"t{i}" for i in range(10)], "test": ["u0", "u1"]}
    for split, names in rows.items():
        manifest = "an4_train.json" if split == "train" else "an4_val.json"
        with open(tmp_path / manifest, "w") as f:
            for n in names:
                write_wav(tmp_path / split / "wav" / f"{n}.wav", [7] * 20, rate=16000)
                f.write(json.dumps({"audio_filepath": f"tests/data/asr/{split}/an4/wav/{n}.wav",
                                    "duration": 9.9, "text": f"word {n}"}) + "\n")
    c = an4_corpus(tmp_path)
    assert [u.id for u in c["dev"]] == ["t4", "t9"]  # every fifth
    assert [u.id for u in c["train"]] == ["t0", "t1", "t2", "t3", "t5", "t6", "t7", "t8"]
    assert [u.text for u in c["test"]] == ["word u0", "word u1"]
    (tmp_path / "test" / "wav" / "u1.wav").unlink()
    with pytest.raises(DataError, match=r"an4_val\.json:2: expected the audio of .*u1\.wav"):
        an4_corpus(tmp_path)


# ---------------------------------------------------------------------- the real corpora

needs_shared = pytest.mark.skipif(not (SHARED_DATA / "yesno").is_dir(),
                                  reason="the shared speech corpora are not here")


@needs_shared
def test_the_real_corpora_have_their_documented_splits():
    y = yesno_corpus(SHARED_DATA / "yesno")
    assert [len(y[s]) for s in ("train", "dev", "test")] == [24, 6, 30]
    names = sorted(p.stem for p in (SHARED_DATA / "yesno" / "waves_yesno").glob("*.wav"))
    assert [u.id for u in y["train"] + y["dev"]] == names[:30]
    f = fsdd_corpus(SHARED_DATA / "fsdd")
    assert [len(f[s]) for s in ("train", "dev", "test")] == [2400, 300, 300]
    assert {int(u.id.rsplit("_", 1)[1]) for u in f["test"]} == set(range(5))
    a = an4_corpus(SHARED_DATA / "an4_subset")
    assert [len(a[s]) for s in ("train", "dev", "test")] == [24, 6, 10]
    assert {u.text for u in a["test"]} >= {"two forty", "one fifty", "nineteen"}


@needs_shared
@pytest.mark.parametrize("name", list(CORPORA))
def test_recorded_listing_digests_match_the_shared_sha256sums(name):
    folder = SHARED_DATA / CORPORA[name].folder
    sums = {}
    for line in (folder / "sha256sums").read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        sums[rel] = digest
    files = corpus_files(name)
    listing = "".join(f"{sums[n]}  {n}\n" for n in sorted(files))
    assert hashlib.sha256(listing.encode()).hexdigest() == CORPORA[name].listing_sha256
    assert listing_sha256(folder, files) == CORPORA[name].listing_sha256  # the files themselves


# ---------------------------------------------------------------------- downloads


@pytest.fixture()
def served(tmp_path_factory):
    """A local copy of the yesno corpus's file names (tiny stand-in recordings),
    served over HTTP on 127.0.0.1."""
    root = tmp_path_factory.mktemp("served")
    for k, rel in enumerate(corpus_files("yesno").values()):
        write_wav(root / rel, [k] * 16)
    handler = functools.partial(_Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/{{path}}"
    httpd.shutdown()
    httpd.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _digest(folder: Path) -> str:
    names = sorted(corpus_files("yesno"))
    text = "".join(f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n"
                   for n in names)
    return hashlib.sha256(text.encode()).hexdigest()


def test_fetch_corpus_downloads_checks_the_listing_and_moves_it_into_place(served, tmp_path):
    source, url = served
    dest = fetch_corpus("yesno", tmp_path / "data", url=url, sha256=_digest(source))
    assert dest == tmp_path / "data" / "yesno"
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["yesno"]  # no staging
    for rel in corpus_files("yesno"):
        assert (dest / rel).read_bytes() == (source / rel).read_bytes()
    assert len(yesno_corpus(dest)["test"]) == 30
    # present: nothing is fetched (an unreachable address is never asked)
    assert fetch_corpus("yesno", tmp_path / "data", url="http://127.0.0.1:9/{path}") == dest


def test_fetch_corpus_refuses_an_altered_or_incomplete_corpus(served, tmp_path):
    source, url = served
    good = _digest(source)
    one = source / "waves_yesno" / "1_1_1_1_1_1_1_1.wav"
    one.write_bytes(one.read_bytes() + b"\x00\x00")
    with pytest.raises(DataError, match=r"checksum mismatch for the yesno corpus: expected "
                                        rf"listing sha256 {good}, got .*was not written"):
        fetch_corpus("yesno", tmp_path / "data", url=url, sha256=good)
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []
    shutil.rmtree(source / "waves_yesno")
    with pytest.raises(DataError, match="HTTP 404"):
        fetch_corpus("yesno", tmp_path / "data", url=url, sha256=good)
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []
