"""Fuzzing recipes and run directories (Hypothesis): every file of a finished run
(config.yaml, task.json, the pointers, trainer.json, both safetensors files) and
every shipped recipe is mutated, then loaded, evaluated or resumed.

The property: the call succeeds, or raises :class:`memnets.errors.MemnetsError`
whose message names a file of the run (or the recipe); never another exception,
never an import of a module named in a file.  ``make test`` runs the default
profile; ``pytest --hypothesis-profile=long`` runs many more examples.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memnets.config import recipe_names, recipe_path
from memnets.errors import MemnetsError
from memnets.tasks.recipes import load_config
from memnets.train import checkpoint as ckpt
from memnets.train import load_run, train

MARKER = "memnets_fuzz_marker"  # a module that must never be imported
TINY = ["data.T=8", "data.train_size=48", "data.dev_size=16", "data.test_size=16",
        "data.batch_size=8", "model.hidden_size=4", "trainer.log_every=2",
        "trainer.progress=false", "trainer.tensorboard=false", "trainer.max_steps=4",
        "trainer.checkpoint_every=3", "trainer.eval_every=null", "trainer.threads=1"]


@pytest.fixture(scope="module")
def marker(tmp_path_factory):
    """A module on sys.path that records being imported; any import is a failure."""
    folder = tmp_path_factory.mktemp("marker")
    flag = folder / "IMPORTED"
    (folder / f"{MARKER}.py").write_text(f"open({str(flag)!r}, 'w').close()\n")
    sys.path.insert(0, str(folder))
    yield flag
    sys.path.remove(str(folder))
    assert not flag.exists(), "a module named in a file was imported"


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory):
    """A finished adding run and a stateful (carried-state) character LM run."""
    root = tmp_path_factory.mktemp("runs")
    train(load_config("adding", TINY), root / "adding", quiet=True)
    (root / "t.txt").write_text("the cat sat on the mat. the dog ran away.\n" * 12)
    train(load_config("shakespeare_char", [
        f"data.path={root / 't.txt'}", f"data.dir={root}", "data.download=false",
        "data.bptt=6", "data.batch_size=4", "data.eval_batch_size=4",
        "model.embedding_size=4", "model.hidden_size=4", "model.num_layers=1",
        "trainer.max_steps=5", "trainer.checkpoint_every=5", "trainer.eval_every=null",
        "trainer.max_epochs=1", "trainer.progress=false", "trainer.tensorboard=false",
        "trainer.threads=1"]), root / "lm", quiet=True)
    return root


FILES = ["config.yaml", "task.json", "checkpoints/latest.json", "checkpoints/best.json",
         "CKPT/trainer.json", "CKPT/model.safetensors", "CKPT/trainer.safetensors",
         "metrics.jsonl", "results.json"]


def _json_values():
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                     st.floats(allow_nan=False), st.text(max_size=12),
                     st.sampled_from([f"{MARKER}:Task", f"{MARKER}.x:os.system", "os:system",
                                      "LSTMState", "../../x", "step-00000001"]))
    return st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                  st.dictionaries(st.text(max_size=6), c,
                                                                  max_size=3)), max_leaves=8)


def _mutate_bytes(data: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "empty", "non_utf8",
                                 "duplicate"]))
    if kind == "empty" or not data:
        return b""
    i = draw(st.integers(0, max(len(data) - 1, 0)))
    if kind == "truncate":
        return data[:i]
    if kind == "flip":
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    if kind == "insert":
        return data[:i] + draw(st.binary(min_size=1, max_size=8)) + data[i:]
    if kind == "non_utf8":
        return data[:i] + b"\xff\xfe\xc3" + data[i:]
    return data[:i] + data  # duplicate a prefix


def _mutate_json(data: bytes, draw) -> bytes:
    try:
        value = json.loads(data)
    except ValueError:
        return _mutate_bytes(data, draw)

    def walk(v):
        if isinstance(v, dict) and v and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(v)))
            action = draw(st.sampled_from(["drop", "replace", "recurse"]))
            v = dict(v)
            if action == "drop":
                del v[key]
            elif action == "replace":
                v[key] = draw(_json_values())
            else:
                v[key] = walk(v[key])
        elif isinstance(v, list) and v and draw(st.booleans()):
            v = list(v)
            i = draw(st.integers(0, len(v) - 1))
            v[i] = draw(_json_values()) if draw(st.booleans()) else walk(v[i])
        elif draw(st.booleans()):
            v = draw(_json_values())
        return v

    return json.dumps(walk(value)).encode()


def _run_copy(src: Path) -> Path:
    dst = Path(tempfile.mkdtemp(prefix="fuzzrun-")) / src.name
    shutil.copytree(src, dst)
    return dst


def _check(run: Path, error: MemnetsError, mutated: Path) -> None:
    text = str(error)
    # the file is named: one of the run's, or the data file a changed config points at
    assert str(run) in text or mutated.name in text or re.search(r"(^|\s)/\S*", text), \
        f"names no file: {text}"
    assert "\n" not in text.strip(), f"more than one line: {text!r}"


@given(data=st.data())
@pytest.mark.parametrize("which", ["adding", "lm"])
def test_a_mutated_run_directory_loads_resumes_or_names_the_file(which, data, finished_runs,
                                                                 marker):
    run = _run_copy(finished_runs / which)
    try:
        folder = ckpt.read_pointer(run).name
        rel = data.draw(st.sampled_from(FILES)).replace("CKPT", f"checkpoints/{folder}")
        path = run / rel
        if not path.exists():
            return
        original = path.read_bytes()
        mutate = _mutate_json if path.suffix == ".json" else _mutate_bytes
        path.write_bytes(mutate(original, data.draw))
        action = data.draw(st.sampled_from(["load_best", "load_latest", "evaluate", "resume"]))
        try:
            if action == "resume":
                config = load_config(str(run / "config.yaml"), ["trainer.max_steps=7"]) \
                    if which == "adding" else None
                if config is None:
                    from memnets.train.trainer import read_run_config

                    config = read_run_config(run)
                    config.trainer.max_steps = 7
                train(config, run, resume=True, quiet=True)
            else:
                config, task, model = load_run(run, which="latest" if action == "load_latest"
                                               else "best")
                if action == "evaluate":
                    task.evaluate(model, "dev", batch_size=8)
        except MemnetsError as e:
            _check(run, e, path)
    finally:
        shutil.rmtree(run.parent, ignore_errors=True)


@given(data=st.data(), name=st.sampled_from(recipe_names()))
def test_a_mutated_recipe_loads_or_names_the_file(data, name, marker, tmp_path_factory):
    text = recipe_path(name).read_bytes()
    folder = Path(tempfile.mkdtemp(prefix="fuzzrecipe-"))
    try:
        if data.draw(st.booleans()):
            new = _mutate_bytes(text, data.draw)
        else:  # a structural change: one key of one section set to an odd value
            import yaml

            raw = yaml.safe_load(text) or {}
            section = data.draw(st.sampled_from(sorted(raw) + ["trainer", "model", "extends"]))
            if isinstance(raw.get(section), dict) and raw[section] and data.draw(st.booleans()):
                key = data.draw(st.sampled_from(sorted(raw[section])))
                raw[section][key] = data.draw(_json_values())
            else:
                raw[section] = data.draw(_json_values())
            new = yaml.safe_dump(raw).encode()
        path = folder / f"{name}.yaml"
        path.write_bytes(new)
        try:
            load_config(str(path))
        except MemnetsError as e:
            assert path.name in str(e) or str(folder) in str(e) or "extends" in str(e), str(e)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@given(data=st.data())
def test_any_latest_pointer_never_blocks_a_resume(data, finished_runs, marker):
    """Whatever happens to latest.json, a complete checkpoint is found and resumed."""
    run = _run_copy(finished_runs / "adding")
    try:
        pointer = run / "checkpoints" / "latest.json"
        kind = data.draw(st.sampled_from(["json", "bytes", "delete"]))
        if kind == "delete":
            pointer.unlink()
        else:
            pointer.write_bytes((_mutate_json if kind == "json" else _mutate_bytes)(
                pointer.read_bytes(), data.draw))
        folder, _ = ckpt.find_latest(run)
        assert folder is not None and ckpt.is_complete(folder)
        train(load_config(str(run / "config.yaml"), ["trainer.max_steps=7"]), run,
              resume=True, quiet=True)
        assert ckpt.read_pointer(run) is not None
    finally:
        shutil.rmtree(run.parent, ignore_errors=True)
