"""The data readers refuse malformed files with one clear line, never an internal error.

One test per defect of the hostile-user review (each failed on the readers as
they were), then one plain regression test per finding of the fuzz tests
(``tests/test_fuzz_data.py``).  Every file is written into ``tmp_path``; nothing
here touches the network except a local HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import functools
import http.server
import io
import re
import tarfile
import threading
import tomllib
from pathlib import Path

import pytest

from memnets.data.atis import read_iob, read_seq
from memnets.data.babi import BabiFormatError, ensure_babi, load_babi, parse_lines, read_task
from memnets.data.chars import load_chars
from memnets.data.ptb import load_ptb, read_words
from memnets.data.sst import SSTFormatError, load_sst, parse_tree, read_sentences, read_trees
from memnets.errors import DataError, MemnetsError
from memnets.tasks.babi import read_story_file

REPO = Path(__file__).resolve().parents[2]
QA1 = "qa1_single-supporting-fact"
BABI_TRAIN = "1 Mary moved to the bathroom.\n2 John went to the hallway.\n" \
             "3 Where is Mary? \tbathroom\t1\n"


def _babi_root(root: Path, train: bytes = BABI_TRAIN.encode(),
               test: bytes = BABI_TRAIN.encode()) -> Path:
    (root / "en").mkdir(parents=True, exist_ok=True)
    (root / "en" / f"{QA1}_train.txt").write_bytes(train)
    (root / "en" / f"{QA1}_test.txt").write_bytes(test)
    return root


def _seq(folder: Path, words: str, tags: str, labels: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "seq.in").write_text(words)
    (folder / "seq.out").write_text(tags)
    if labels is not None:
        (folder / "label").write_text(labels)
    return folder


def _ptb(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ptb.train.txt").write_text(" the cat sat \n the <unk> ran \n")
    (root / "ptb.valid.txt").write_text(" the cat sat \n")
    (root / "ptb.test.txt").write_text(" cat ran \n")
    return root


def _sst(root: Path) -> Path:
    for name in ("fine", "binary"):
        for split in ("train", "dev", "test"):
            f = root / "sentences" / f"stsa.{name}.{split}"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text("1 a fine film\n0 a bad one\n")
    (root / "trees").mkdir(parents=True, exist_ok=True)
    (root / "trees" / "train.txt").write_text("(3 (2 a) (3 film))\n(1 (2 a) (1 dud))\n")
    return root


# ------------------------------------------------------------- 1. bAbI download


@pytest.fixture()
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _archive(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"tasks_1-20_v1-2/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_babi_checksum_mismatch_leaves_nothing_behind(server, tmp_path):
    """A tampered archive is refused on every run: nothing of it stays on disk."""
    served, url = server
    _archive(served / "babi.tar.gz", {f"en/{QA1}_test.txt": b"1 Mary went home.\n",
                                      f"en/{QA1}_train.txt": b"1 Mary went home.\n"})
    for _ in range(2):  # the second run must not train on what the first one unpacked
        with pytest.raises(DataError, match=rf"checksum mismatch for .*{QA1}_t"):
            ensure_babi(tmp_path, url=f"{url}/babi.tar.gz", quiet=True)
        assert not (tmp_path / "babi" / "tasks_1-20_v1-2").exists()
        assert list((tmp_path / "babi").iterdir()) == []  # no archive, no temporary folder


def test_babi_unreadable_archive_is_a_data_error(server, tmp_path):
    served, url = server
    (served / "babi.tar.gz").write_bytes(b"this is not a gzip file\n" * 10)
    with pytest.raises(DataError, match=r"tasks_1-20_v1-2.tar.gz: expected a .*tar archive"):
        ensure_babi(tmp_path, url=f"{url}/babi.tar.gz", quiet=True)
    assert list((tmp_path / "babi").iterdir()) == []


def test_babi_sha256_table_is_package_data():
    from memnets.data import babi

    sums = REPO / "src" / "memnets" / "data" / "babi.sha256"
    lines = sums.read_text().splitlines()
    table = dict(reversed(line.split("  ", 1)) for line in lines)
    assert table == babi.BABI_SHA256 and len(table) == 79
    assert table["en/qa1_single-supporting-fact_test.txt"] == (
        "55acf66cef2f6d798e2aa1d056e1ec8f24e910ea9215b639450574321132959b")
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["memnets"]
    assert "data/babi.sha256" in package_data
    assert "BABI_SHA256 = {" not in Path(babi.__file__).read_text()


# ------------------------------------------------------------- 2. non-UTF-8 bytes

BAD = b"\xff\xfe"


def _lines_with_bad_byte(text: str, line: int = 3) -> bytes:
    """``text`` with two bytes that are not UTF-8 in the middle of ``line`` (1-based)."""
    rows = text.encode().splitlines(keepends=True)
    rows[line - 1] = rows[line - 1][:4] + BAD + rows[line - 1][4:]
    return b"".join(rows)


def _babi_case(tmp):
    root = _babi_root(tmp, train=_lines_with_bad_byte(BABI_TRAIN))
    return f"{QA1}_train.txt", lambda: load_babi(root, [1])


def _story_case(tmp):
    f = tmp / "story.txt"
    f.write_bytes(_lines_with_bad_byte("Mary went home.\nJohn left.\nSandra ran.\n"))
    return "story.txt", lambda: read_story_file(f)


def _seq_case(name):
    def case(tmp):
        files = {"seq.in": "fly to paris\nhello\nbye now then\n",
                 "seq.out": "O O B-city\nO\nO O O\n", "label": "book\ngreet\nfarewell\n"}
        folder = _seq(tmp / "train", files["seq.in"], files["seq.out"], files["label"])
        (folder / name).write_bytes(_lines_with_bad_byte(files[name]))
        return f"train/{name}", lambda: read_seq(folder)
    return case


def _iob_case(tmp):
    f = tmp / "atis.train.w-intent.iob"
    f.write_bytes(_lines_with_bad_byte("BOS hi EOS\tO O greet\nBOS yo EOS\tO O greet\n"
                                       "BOS fly to rome EOS\tO O O B-city book\n"))
    return "atis.train.w-intent.iob", lambda: read_iob(f)


def _ptb_case(level):
    def case(tmp):
        root = _ptb(tmp)
        text = " the cat sat \n the <unk> ran \n a dog sat \n"
        (root / "ptb.train.txt").write_bytes(_lines_with_bad_byte(text))
        return "ptb.train.txt", lambda: load_ptb(root, level=level)
    return case


def _chars_case(tmp):
    f = tmp / "input.txt"
    f.write_bytes(_lines_with_bad_byte("First Citizen:\nBefore we proceed any further.\n"
                                       "All:\nSpeak, speak.\n" * 5))
    return "input.txt", lambda: load_chars(f)


def _trees_case(tmp):
    f = _sst(tmp) / "trees" / "train.txt"
    f.write_bytes(_lines_with_bad_byte("(2 a)\n(3 good)\n(3 (2 a) (3 film))\n"))
    return "trees/train.txt", lambda: load_sst(tmp, fine=True, phrases=True)


def _sentences_case(tmp):
    f = _sst(tmp) / "sentences" / "stsa.fine.dev"
    f.write_bytes(_lines_with_bad_byte("1 a fine film\n0 a bad one\n4 a great one\n"))
    return "sentences/stsa.fine.dev", lambda: load_sst(tmp, fine=True)


@pytest.mark.parametrize("case", [
    _babi_case, _story_case, _seq_case("seq.in"), _seq_case("seq.out"), _seq_case("label"),
    _iob_case, _ptb_case("word"), _ptb_case("char"), _chars_case, _trees_case,
    _sentences_case,
], ids=["babi", "story", "seq.in", "seq.out", "label", "iob", "ptb", "ptb-char", "chars",
        "sst-trees", "sst-sentences"])
def test_non_utf8_bytes_name_file_and_line(tmp_path, case):
    name, call = case(tmp_path)
    with pytest.raises(DataError) as info:
        call()
    msg = str(info.value)
    assert re.search(rf"{re.escape(name)}:3: expected UTF-8 text, got b'\\xff' at byte 5", msg), msg
    assert "\n" not in msg


# ------------------------------------------------------------- 3. deep SST trees


def test_deep_sst_tree_is_a_format_error(tmp_path):
    f = tmp_path / "train.txt"
    f.write_text("(2 a)\n" + "(2 " * 5000 + "(2 a)" + ")" * 5000 + "\n")
    with pytest.raises(SSTFormatError, match=r"train.txt:2: expected a tree at most 200 levels"):
        read_trees(f)
    assert parse_tree("(2 " * 199 + "(2 a)" + ")" * 199).label == 2  # 200 levels is fine


# ------------------------------------------------------------- 4. long content is cut


def _long_babi(tmp):
    f = _babi_root(tmp, train=b"1 Mary went home.\n" + b"\x00" * 5000 + b"\n")
    return lambda: load_babi(f, [1])


def _long_label(tmp):
    folder = _seq(tmp / "train", "a\nb\n", "O\nO\n", "x\n" + "y " * 2500 + "\n")
    return lambda: read_seq(folder)


def _long_iob(tmp):
    f = tmp / "x.iob"
    f.write_text("BOS " + "w " * 2500 + "\tO O\n")
    return lambda: read_iob(f)


def _long_tree_token(tmp):
    f = tmp / "trees.txt"
    f.write_text("(2 a) " + "x" * 5000 + "\n")
    return lambda: read_trees(f)


def _long_sentence(tmp):
    f = tmp / "stsa.fine.train"
    f.write_text("9" * 5000 + " bad\n")
    return lambda: read_sentences(f, num_classes=5)


@pytest.mark.parametrize("case", [_long_babi, _long_label, _long_iob, _long_tree_token,
                                  _long_sentence],
                         ids=["babi", "label", "iob", "sst-tree", "sst-sentence"])
def test_long_offending_content_is_shortened(tmp_path, case):
    with pytest.raises(DataError) as info:
        case(tmp_path)()
    msg = str(info.value)
    assert len(msg) < 400 and "characters)" in msg, msg


# ------------------------------------------------------------- 5. error classes


def test_format_errors_are_data_errors_naming_file_and_line(tmp_path):
    assert issubclass(BabiFormatError, DataError) and issubclass(BabiFormatError, ValueError)
    assert issubclass(SSTFormatError, DataError) and issubclass(SSTFormatError, ValueError)
    with pytest.raises(DataError, match=r"bad.txt:2: expected 'ID text'"):
        parse_lines(["1 a.", "x"], name="bad.txt")
    folder = _seq(tmp_path / "a", "fly to paris\n", "O O\n")
    with pytest.raises(DataError, match=r"a/seq.out:1: expected 3 tags") as info:
        read_seq(folder)
    assert isinstance(info.value, ValueError)  # still caught where ValueError was
    f = tmp_path / "x.iob"
    f.write_text("BOS a EOS\tO O x\nBOS a EOS O O x\n")
    with pytest.raises(DataError, match=r"x.iob:2: expected 'BOS words EOS<TAB>"):
        read_iob(f)


@pytest.mark.parametrize("call, path", [
    (lambda d: read_task(d, 1, "train"), f"en/{QA1}_train.txt"),
    (lambda d: load_babi(d, [1], missing="skip"), "none of the bAbI tasks"),
    (lambda d: read_seq(d / "train"), "train/seq.in"),
    (lambda d: read_iob(d / "a.iob"), "a.iob"),
    (lambda d: read_words(d / "ptb.train.txt"), "ptb.train.txt"),
    (lambda d: load_ptb(d), "ptb.train.txt"),
    (lambda d: load_chars(d / "input.txt"), "input.txt"),
    (lambda d: read_trees(d / "train.txt"), "train.txt"),
    (lambda d: read_sentences(d / "stsa.fine.dev", num_classes=5), "stsa.fine.dev"),
    (lambda d: load_sst(d, fine=False), "stsa.binary.train"),
    (lambda d: read_story_file(d / "story.txt"), "story.txt"),
], ids=["task_file", "load_babi", "seq", "iob", "ptb", "load_ptb", "chars", "trees",
        "sentences", "load_sst", "story"])
def test_missing_files_are_data_errors_naming_the_path(tmp_path, call, path):
    with pytest.raises(DataError, match=re.escape(path)) as info:
        call(tmp_path)
    assert isinstance(info.value, FileNotFoundError)  # callers catching it keep working


# ------------------------------------------------------------- 6. silently accepted data


def test_babi_question_without_tabs_is_an_error():
    with pytest.raises(BabiFormatError, match=r"t.txt:3: expected 'ID question<TAB>answer"
                                              r"<TAB>supporting IDs'.*no TAB"):
        parse_lines(["1 Mary went home.", "2 John left.", "3 Where is Mary?"], name="t.txt")
    assert parse_lines(["1 Is it so?\tyes\t"], name="t.txt")[0].answer == ("yes",)


def test_atis_tags_outside_bio_are_errors(tmp_path):
    folder = _seq(tmp_path / "train", "fly to paris\nhi\n", "O O B-city\nX-foo\n")
    with pytest.raises(DataError, match=r"train/seq.out:2: expected tags O, B-<slot> or "
                                        r"I-<slot>, got 'X-foo'"):
        read_seq(folder)
    f = tmp_path / "x.iob"
    f.write_text("BOS fly to rome EOS\tO O O B-city book\nBOS hi EOS\tO B- greet\n")
    with pytest.raises(DataError, match=r"x.iob:2: expected tags O, B-<slot> or I-<slot>, "
                                        r"got 'B-'"):
        read_iob(f)


def _home(root: Path, labels: dict[str, bool]) -> None:
    for split, has_label in labels.items():
        _seq(root / "home" / split, "switch on the lamp\nplay clocks\n" * 4,
             "O O O B-device\nO B-song\n" * 4, "switch\nplay\n" * 4 if has_label else None)


def test_atis_joint_without_intent_labels_fails_at_setup(tmp_path):
    from memnets.tasks.recipes import load_config
    from memnets.train import make_task

    _home(tmp_path, {"train": False, "valid": False, "test": False})
    cfg = load_config("atis-joint", [f"data.dir={tmp_path}", "data.corpus=home"])
    with pytest.raises(DataError, match=r"expected .*home/train/label.*data.select='joint'"):
        make_task(cfg).setup()
    _home(tmp_path, {"train": True, "valid": True, "test": False})
    with pytest.raises(DataError, match=r"expected .*home/test/label"):
        make_task(cfg).setup()
    _home(tmp_path / "b", {"train": False, "valid": False, "test": False})
    slots_only = load_config("atis-bilstm", [f"data.dir={tmp_path / 'b'}", "data.corpus=home"])
    make_task(slots_only).setup()  # a recipe without intents trains on the files as they are


# ------------------------------------------------------------- 7. splits checked up front


def test_slot_filling_check_splits_names_a_missing_test_split(tmp_path, monkeypatch):
    import socket

    from memnets.tasks.recipes import load_config
    from memnets.train import make_task

    def no_network(*args, **kwargs):
        raise AssertionError("check_splits tried the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    _home(tmp_path, {"train": True, "valid": True})
    cfg = load_config("atis-joint", [f"data.dir={tmp_path}", "data.corpus=home"])
    task = make_task(cfg)
    task.check_splits(("train", "dev"))
    with pytest.raises(DataError, match=r"not found: expected .*home/test/seq.in"):
        task.check_splits(("train", "dev", "test"))
    (tmp_path / "atis_slotgated").mkdir()  # a known corpus, downloads switched off
    cfg = load_config("atis-joint", [f"data.dir={tmp_path}", "data.download=false"])
    with pytest.raises(DataError, match=r"expected .*atis_slotgated/train/seq.in"):
        make_task(cfg).check_splits(("train", "dev", "test"))
    _home(tmp_path, {"train": True, "valid": True, "test": True})
    (tmp_path / "home" / "test" / "seq.in").write_text("")
    (tmp_path / "home" / "test" / "seq.out").write_text("")
    (tmp_path / "home" / "test" / "label").write_text("")
    cfg = load_config("atis-joint", [f"data.dir={tmp_path}", "data.corpus=home"])
    with pytest.raises(DataError, match=r"expected utterances in .*home/test, got none"):
        make_task(cfg).check_splits(("train", "dev", "test"))


def test_sentiment_and_language_model_check_splits(tmp_path):
    from memnets.tasks.language_model import (
        CharLanguageModelTask,
        LMDataConfig,
        WordLanguageModelTask,
    )
    from memnets.tasks.sentiment import SentimentTask, SSTDataConfig

    _sst(tmp_path / "sst")
    (tmp_path / "sst" / "sentences" / "stsa.binary.test").write_text("\n")
    task = SentimentTask(SSTDataConfig(download=False), tmp_path)
    task.check_splits(("train", "dev"))
    with pytest.raises(DataError, match=r"expected sentences in .*stsa.binary.test, got none"):
        task.check_splits(("train", "dev", "test"))

    _ptb(tmp_path / "ptb")
    (tmp_path / "ptb" / "ptb.test.txt").unlink()
    with pytest.raises(DataError, match=r"expected .*ptb.test.txt"):
        WordLanguageModelTask(LMDataConfig(download=False), tmp_path).check_splits(("test",))

    (tmp_path / "t.txt").write_text("abcdefghij" * 20)
    chars = CharLanguageModelTask(LMDataConfig(path=str(tmp_path / "t.txt"), batch_size=4,
                                               eval_batch_size=1, split=[0.99, 0.01, 0.0]),
                                  tmp_path)
    chars.check_splits(("train", "dev"))
    with pytest.raises(DataError, match=r"the test part \(fraction 0.0\) of .*t.txt: expected "
                                        r"at least 2 characters \(one batch of 1 streams\), "
                                        r"got 0"):
        chars.check_splits(("train", "dev", "test"))
    chars.config.batch_size = 200
    with pytest.raises(DataError, match=r"the train part .* expected at least 400 characters"):
        chars.check_splits(("train",))


# ------------------------------------------------------------- every error is a MemnetsError


def test_reader_errors_are_memnets_errors(tmp_path):
    with pytest.raises(MemnetsError):
        load_chars(tmp_path / "none.txt")


# ------------------------------------------------------------- findings beyond the review
# (the first by the fuzz tests, the others by reading the readers while fixing them)


def test_ptb_char_level_character_outside_training_is_a_data_error(tmp_path):
    """Fuzz finding (test_fuzz_ptb, level=char, one byte of ptb.test.txt flipped): a
    character of valid/test absent from train was a bare KeyError from the vocabulary."""
    root = _ptb(tmp_path)
    (root / "ptb.test.txt").write_text(" cat ran! \n")
    with pytest.raises(DataError, match=r"ptb.test.txt: expected only characters of .*"
                                        r"ptb.train.txt .*got \['!'\]"):
        load_ptb(root, level="char")


@pytest.mark.parametrize("write, call, where", [
    (lambda f: f.write_text("(2 a)\n(\u00b2 b)\n"), read_trees, r"f.txt:2: expected a label 0-4"),
    (lambda f: f.write_text("1 fine\n\u00b2 b\n"), lambda f: read_sentences(f, num_classes=5),
     r"f.txt:2: expected 'label words...'"),
])
def test_sst_label_in_non_ascii_digits_is_a_format_error(tmp_path, write, call, where):
    """'²'.isdigit() is true but int('²') fails: it was a bare ValueError."""
    f = tmp_path / "f.txt"
    write(f)
    with pytest.raises(SSTFormatError, match=where):
        call(f)


def test_babi_line_id_of_thousands_of_digits_is_a_format_error():
    """int() of a 5000-digit ID raised Python's own 'Exceeds the limit' ValueError."""
    with pytest.raises(BabiFormatError, match=r"t.txt:2: expected a line ID of at most 9 digits"):
        parse_lines(["1 Mary went home.", "9" * 5000 + " John left."], name="t.txt")


def test_babi_empty_answer_word_is_a_format_error():
    with pytest.raises(BabiFormatError, match=r"t.txt:2: expected answer words separated by "
                                              r"commas, got 'milk,,apple'"):
        parse_lines(["1 Mary got the milk.", "2 What is Mary carrying?\tmilk,,apple\t1"],
                    name="t.txt")


def test_atis_iob_label_of_bos_must_be_o(tmp_path):
    f = tmp_path / "x.iob"
    f.write_text("BOS fly to rome EOS\tB-city O O B-city book\n")
    with pytest.raises(DataError, match=r"x.iob:1: expected the label O for BOS, got 'B-city'"):
        read_iob(f)


def test_babi_task_file_without_questions_is_a_format_error(tmp_path):
    """An emptied task file (a fuzz mutation) was read as a task with no questions, which
    joint training then silently left out."""
    root = _babi_root(tmp_path, test=b"1 Mary went home.\n2 John left.\n")
    with pytest.raises(BabiFormatError, match=rf"{QA1}_test.txt: expected questions"):
        load_babi(root, [1])


def test_word_vectors_file_errors_name_file_and_line(tmp_path):
    """Word vectors were decoded with errors="replace" and raised plain ValueErrors."""
    from memnets.data.vocab import Vocab
    from memnets.models.classifier import load_word_vectors

    vocab = Vocab.build([["the", "cat"]])
    f = tmp_path / "vec.txt"
    f.write_bytes(b"the 0.1 0.2\ncat 0.3 0.\xff4\n")
    with pytest.raises(DataError, match=r"vec\.txt:2: expected UTF-8 text"):
        load_word_vectors(f, vocab)
    f.write_bytes(b"the 0.1 0.2\ncat 0.3\n")
    with pytest.raises(DataError, match=r"vec\.txt:2: expected a word and 2 values"):
        load_word_vectors(f, vocab)
    with pytest.raises(DataError, match="expected a word-vector text file"):
        load_word_vectors(tmp_path / "none.txt", vocab)
