"""Fuzz tests of the data readers: real files, mutated, read back.

Each test copies a few dozen lines of a real dataset from ``SHARED_DATA`` into
a fresh temporary folder in the reader's layout, mutates one file (truncated
at a byte, bytes flipped or inserted, bytes that are not UTF-8, a TAB or
space separated field dropped or doubled, lines doubled, deleted or
shuffled, the file emptied) and calls the reader.  The property: the call
succeeds, or raises :class:`memnets.errors.MemnetsError` with a one-line
message that names the mutated file; never another exception, never the
network (a guard makes any connection attempt fail the test).

``pytest --hypothesis-profile=long`` runs 400 examples per test instead of 12.
"""

from __future__ import annotations

import random
import socket
import tempfile
from pathlib import Path

import pytest
from conftest import SHARED_DATA
from hypothesis import given
from hypothesis import strategies as st

from memnets.data.atis import read_iob, read_seq
from memnets.data.babi import load_babi
from memnets.data.chars import load_chars
from memnets.data.ptb import load_ptb
from memnets.data.sst import load_sst
from memnets.errors import MemnetsError
from memnets.tasks.babi import read_story_file
from memnets.tasks.slot_filling import SlotDataConfig, SlotFillingTask

LINES = 30  # lines of each real file copied into a test folder
QA1 = "qa1_single-supporting-fact"


def _head(path: Path, n: int = LINES) -> bytes | None:
    """The first ``n`` lines of a shared file, or None when it is absent."""
    if not path.is_file():
        return None
    with path.open("rb") as f:
        return b"".join(f.readline() for _ in range(n))


def _slices(folder: str, names: list[str], n: int = LINES) -> dict[str, bytes] | None:
    out = {name: _head(SHARED_DATA / folder / name, n) for name in names}
    return None if any(v is None for v in out.values()) else out


BABI = _slices("babi/tasks_1-20_v1-2/en", [f"{QA1}_train.txt", f"{QA1}_test.txt"])
SEQ = _slices("atis_slotgated", [f"{s}/{f}" for s in ("train", "valid", "test")
                                 for f in ("seq.in", "seq.out", "label")])
IOB = _slices("atis_jointslu", ["atis.train.w-intent.iob"])
PTB = _slices("ptb", ["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"], 20)
if PTB is not None:  # so that the training slice holds every character of the others
    PTB["ptb.train.txt"] += PTB["ptb.valid.txt"] + PTB["ptb.test.txt"]
CHARS = _slices("tinyshakespeare", ["input.txt"], 40)
SST = _slices("sst", [f"sentences/stsa.{k}.{s}" for k in ("fine", "binary")
                      for s in ("train", "dev", "test")] + ["trees/train.txt"])


def _needs(files, what: str):
    return pytest.mark.skipif(files is None, reason=f"shared {what} not found under "
                                                     f"{SHARED_DATA} (set MEMNETS_DATA)")


# ---------------------------------------------------------------------- mutations

POS = st.integers(0, 1 << 16)  # a byte or line position, taken modulo the length
NOT_UTF8 = st.sampled_from([b"\xff", b"\xc3", b"\x80", b"\xed\xa0\x80", b"\xf8\x88\x80\x80"])
SPECIAL = st.sampled_from([b"\t", b" ", b"\n", b"\r", b"(", b")", b"?", b",", b"0", b"9",
                           b"\x00", b"\xc2\xa0", b"\xc2\xb2", b"O", b"B-", b"<unk>", b"BOS"])
MUTATION = st.one_of(
    st.tuples(st.just("truncate"), POS),
    st.tuples(st.just("flip"), POS, st.integers(1, 255)),
    st.tuples(st.just("insert"), POS, st.one_of(st.binary(min_size=1, max_size=6), SPECIAL)),
    st.tuples(st.just("not_utf8"), POS, NOT_UTF8),
    st.tuples(st.just("drop_field"), POS, POS),
    st.tuples(st.just("double_field"), POS, POS),
    st.tuples(st.just("double_line"), POS),
    st.tuples(st.just("delete_line"), POS),
    st.tuples(st.just("shuffle"), POS),
    st.tuples(st.just("empty")),
)
MUTATIONS = st.lists(MUTATION, min_size=1, max_size=3)


def mutate(data: bytes, mutations) -> bytes:
    """Apply each mutation in turn (positions are taken modulo the current length)."""
    for kind, *args in mutations:
        n = max(len(data), 1)
        if kind == "truncate":
            data = data[: args[0] % n]
        elif kind == "flip" and data:
            i = args[0] % n
            data = data[:i] + bytes([data[i] ^ args[1]]) + data[i + 1:]
        elif kind in ("insert", "not_utf8"):
            i = args[0] % (len(data) + 1)
            data = data[:i] + args[1] + data[i:]
        elif kind in ("drop_field", "double_field", "double_line", "delete_line") and data:
            lines = data.split(b"\n")
            k = args[0] % len(lines)
            if kind == "double_line":
                lines.insert(k, lines[k])
            elif kind == "delete_line":
                del lines[k]
            else:
                sep = b"\t" if b"\t" in lines[k] else b" "
                fields = lines[k].split(sep)
                j = args[1] % len(fields)
                if kind == "drop_field":
                    del fields[j]
                else:
                    fields.insert(j, fields[j])
                lines[k] = sep.join(fields)
            data = b"\n".join(lines)
        elif kind == "shuffle":
            lines = data.split(b"\n")
            random.Random(args[0]).shuffle(lines)
            data = b"\n".join(lines)
        elif kind == "empty":
            data = b""
    return data


def write(root: Path, files: dict[str, bytes], target: str, mutations) -> None:
    """Write ``files`` under ``root``, ``target`` mutated."""
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(mutate(data, mutations) if name == target else data)


def refuses_cleanly(call, *names: str) -> None:
    """``call()`` succeeds or raises a one-line MemnetsError naming every one of ``names``."""
    try:
        call()
    except MemnetsError as e:
        msg = str(e)
        missing = [n for n in names if n not in msg]
        assert not missing, f"{type(e).__name__} does not name {missing}: {msg}"
        assert "\n" not in msg and len(msg) < 1000, f"not one short line: {msg!r}"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a reader tried the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


# ---------------------------------------------------------------------- readers


@_needs(BABI, "bAbI")
@given(target=st.sampled_from(sorted(BABI or {"-": b""})), mutations=MUTATIONS,
       memory_size=st.sampled_from([1, 50]))
def test_fuzz_babi(target, mutations, memory_size):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root / "en", BABI, target, mutations)
        refuses_cleanly(lambda: load_babi(root, [1], memory_size=memory_size), target)


@_needs(BABI, "bAbI")
@given(mutations=MUTATIONS)
def test_fuzz_babi_story_file(mutations):
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp), {"story.txt": BABI[f"{QA1}_test.txt"]}, "story.txt", mutations)
        refuses_cleanly(lambda: read_story_file(Path(tmp) / "story.txt"), "story.txt")


@_needs(SEQ, "ATIS (atis_slotgated)")
@given(target=st.sampled_from(["train/seq.in", "train/seq.out", "train/label"]),
       mutations=MUTATIONS)
def test_fuzz_atis_seq(target, mutations):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root, {k: v for k, v in SEQ.items() if k.startswith("train/")}, target, mutations)
        refuses_cleanly(lambda: read_seq(root / "train"), "train/")


@_needs(SEQ, "ATIS (atis_slotgated)")
@given(target=st.sampled_from(sorted(SEQ or {"-": b""})), mutations=MUTATIONS)
def test_fuzz_atis_seq_task_never_downloads(target, mutations):
    """The task on a known corpus folder (downloads on): malformed files never fetch."""
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "atis_slotgated"
        write(corpus, SEQ, target, mutations)

        def read():
            task = SlotFillingTask(SlotDataConfig(corpus=str(corpus), select="joint"), tmp)
            task.check_splits(("train", "dev", "test"))
            task.setup()

        refuses_cleanly(read, target.split("/")[0] + "/")


@_needs(IOB, "ATIS (atis_jointslu)")
@given(mutations=MUTATIONS)
def test_fuzz_atis_iob(mutations):
    with tempfile.TemporaryDirectory() as tmp:
        name = "atis.train.w-intent.iob"
        write(Path(tmp), IOB, name, mutations)
        refuses_cleanly(lambda: read_iob(Path(tmp) / name), name)


@_needs(PTB, "Penn Treebank")
@given(target=st.sampled_from(sorted(PTB or {"-": b""})), mutations=MUTATIONS,
       level=st.sampled_from(["word", "char"]))
def test_fuzz_ptb(target, mutations, level):
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp), PTB, target, mutations)
        refuses_cleanly(lambda: load_ptb(Path(tmp), level=level), target)


@_needs(CHARS, "Tiny Shakespeare")
@given(mutations=MUTATIONS)
def test_fuzz_chars(mutations):
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp), CHARS, "input.txt", mutations)
        refuses_cleanly(lambda: load_chars(Path(tmp) / "input.txt"), "input.txt")


@_needs(SST, "SST")
@given(fine=st.booleans(), split=st.sampled_from(["train", "dev", "test", "trees"]),
       mutations=MUTATIONS)
def test_fuzz_sst(fine, split, mutations):
    target = ("trees/train.txt" if split == "trees"
              else f"sentences/stsa.{'fine' if fine else 'binary'}.{split}")
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp), SST, target, mutations)
        refuses_cleanly(lambda: load_sst(Path(tmp), fine=fine, phrases=True), target)
