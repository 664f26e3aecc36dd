"""Each promise of docs/reliability.md, tested where it could break: nothing a file
names is imported or called, resume is exact, one writer per run directory,
non-finite weights are never kept as good, values are checked before anything
trains, checkpoints are always pointed to, and every broken file is one clear
line naming it.  Each test reproduces a defect found by a hostile-user review."""

from __future__ import annotations

import json
import math
import os
import random
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from safetensors.torch import load_file, save_file

from memnets.cli import main
from memnets.config import ConfigError, DataConfig, load_raw
from memnets.errors import CheckpointError, DataError, MemnetsError, TrainingError
from memnets.tasks import register_task
from memnets.tasks.memory import AddingTask
from memnets.tasks.recipes import load_config
from memnets.train import checkpoint as ckpt
from memnets.train import load_run, train
from memnets.train.trainer import _better

TINY = ["data.T=12", "data.train_size=200", "data.dev_size=40", "data.test_size=40",
        "data.batch_size=8", "model.hidden_size=8", "trainer.log_every=5",
        "trainer.progress=false", "trainer.tensorboard=false", "trainer.threads=1"]
CHAR = ["data.bptt=8", "data.batch_size=4", "data.eval_batch_size=4", "model.embedding_size=8",
        "model.hidden_size=8",
        "model.num_layers=1", "trainer.max_steps=6", "trainer.checkpoint_every=3",
        "trainer.eval_every=null", "trainer.progress=false", "trainer.tensorboard=false",
        "trainer.max_epochs=1", "data.download=false"]


def _char_recipe(tmp_path: Path) -> list[str]:
    (tmp_path / "t.txt").write_text("the cat sat on the mat. the dog ran away.\n" * 30)
    return [f"data.path={tmp_path / 't.txt'}", f"data.dir={tmp_path}", *CHAR]


def _trainer_json(run: Path) -> Path:
    return ckpt.read_pointer(run, "latest") / "trainer.json"


# ----------------------------------------------------------------- 1, 2: no code on load


def test_carried_state_naming_a_callable_is_refused_and_never_run(tmp_path, monkeypatch):
    """Defect 1: trainer.json's carried tree named ``os.system`` and --resume ran it."""
    monkeypatch.chdir(tmp_path)
    sets = _char_recipe(tmp_path)
    run = tmp_path / "run"
    train(load_config("shakespeare_char", sets), run, quiet=True)
    meta_file = _trainer_json(run)
    meta = json.loads(meta_file.read_text())
    marker = tmp_path / "PWNED"
    meta["carried"] = {"nt": "memnets.train.checkpoint:os.system",
                       "items": [{"v": f"touch {marker}"}]}
    meta_file.write_text(json.dumps(meta))
    more = [s for s in sets if "max_steps" not in s] + ["trainer.max_steps=9"]
    with pytest.raises(CheckpointError, match="not a registered recurrent state"):
        train(load_config("shakespeare_char", more), run, resume=True, quiet=True)
    assert not marker.exists()
    assert main(["train", "shakespeare_char", "--out", str(run), "--resume", "--quiet",
                 *sum((["--set", s] for s in more), [])]) == 1
    assert not marker.exists()


def test_a_real_carried_state_round_trips_through_a_resume(tmp_path):
    """The carried LSTM state of a stateful task still comes back, as its own type."""
    sets = _char_recipe(tmp_path)
    run = tmp_path / "run"
    train(load_config("shakespeare_char", sets[:-8] + CHAR[:-7] + [
        "trainer.max_steps=4", "trainer.checkpoint_every=4", "trainer.eval_every=null",
        "trainer.progress=false", "trainer.tensorboard=false", "trainer.max_epochs=1",
        "data.download=false"]), run, quiet=True)
    meta, tensors = ckpt.load_checkpoint(ckpt.read_pointer(run))
    assert meta["carried"] is not None and "nt" not in json.dumps(meta["carried"])
    state = ckpt.unpack_tree(meta["carried"], tensors)
    assert all(isinstance(t, torch.Tensor) for t in torch.utils._pytree.tree_leaves(state))


@pytest.mark.parametrize("spec", [
    {"nt": "os:system", "items": [{"v": "true"}]},
    {"state": "builtins.eval", "items": []},
    {"state": "LSTMState", "items": [{"v": 1}]},  # wrong arity
    {"t": "missing"},
    {"v": {"nested": 1}},
    {"seq": "set", "items": []},
    {"dict": [1, 2]},
    [1, 2],
    {"v": 1, "t": "x", "seq": "list"},
])
def test_unpack_tree_refuses_anything_but_its_own_nodes(spec):
    with pytest.raises(CheckpointError):
        ckpt.unpack_tree(spec, {}, where="trainer.json")


def test_config_never_imports_a_module_named_in_a_file(tmp_path, monkeypatch, capsys):
    """Defect 2: ``task: pkg.mod:Class`` in a run's config.yaml imported any module."""
    marker = tmp_path / "IMPORTED"
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    run = tmp_path / "run"
    assert main(["train", "adding", "--out", str(run), "--quiet",
                 *sum((["--set", s] for s in TINY + ["trainer.max_steps=3"]), [])]) == 0
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace("task: adding", "task: evilmod:Task"))
    assert main(["eval", str(run)]) == 2
    assert "registered task" in capsys.readouterr().err
    (tmp_path / "r.yaml").write_text("task: evilmod:Task\n")
    assert main(["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "r2")]) == 2
    assert not marker.exists()
    # the command line may import a module on purpose
    assert main(["--task-module", "evilmod", "recipes"]) == 0 and marker.exists()
    assert main(["--task-module", "no_such_module_here", "recipes"]) == 2


# ----------------------------------------------------------------- 3, 4, 5: exact resume, phases


def test_rng_state_round_trip_restores_every_stream():
    """A planted bug (set_rng_state a no-op) went unnoticed: assert the round trip."""
    tensors: dict = {}
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    state = json.loads(json.dumps(ckpt.rng_state(tensors)))
    want = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    ckpt.set_rng_state(state, tensors)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(want[0], got[0]) and np.array_equal(want[1], got[1])
    assert want[2] == got[2]


def test_starting_a_split_does_not_draw_from_the_global_rng():
    """Defect 3's cause: creating the DataLoader iterator drew from the global RNG,
    the dropout stream a resumed run restores, so the restored stream was shifted."""
    config = load_config("adding", TINY)
    task = AddingTask(config.data, None)
    task.setup()
    before = torch.get_rng_state()
    next(iter(task.batches("train", batch_size=8, shuffle=True, epoch=2, start=3)))
    assert torch.equal(before, torch.get_rng_state())


def test_resume_with_dropout_is_bit_identical_in_process(tmp_path):
    """Defect 3: with two layers and dropout 0.3 every tensor differed after a resume."""
    sets = TINY + ["model.num_layers=2", "model.dropout=0.3", "trainer.deterministic=true",
                   "trainer.checkpoint_every=7", "trainer.eval_every=20"]
    train(load_config("adding", sets + ["trainer.max_steps=40"]), tmp_path / "ref", quiet=True)
    train(load_config("adding", sets + ["trainer.max_steps=14"]), tmp_path / "cut", quiet=True)
    train(load_config("adding", sets + ["trainer.max_steps=40"]), tmp_path / "cut",
          resume=True, quiet=True)
    a = load_file(str(ckpt.read_pointer(tmp_path / "ref") / "model.safetensors"))
    b = load_file(str(ckpt.read_pointer(tmp_path / "cut") / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


needs_babi = pytest.mark.skipif(not (SHARED_DATA / "babi/tasks_1-20_v1-2/en").is_dir(),
                                reason=f"bAbI not found under {SHARED_DATA}")


def _babi_task():
    from memnets.tasks.babi import BabiTask

    config = load_config("babi-task1", [f"data.dir={SHARED_DATA}", "model.embed_dim=8"])
    task = BabiTask(config.data, SHARED_DATA)
    task.setup()
    model = task.build_model(config.model)
    return task, model


@needs_babi
def test_babi_linear_start_counters_are_saved_and_restored():
    """Defect 4: _ls_best/_ls_wait/_ls_evals were not checkpointed (task_state {})."""
    task, model = _babi_task()
    task.update_linear_start(model, 2.0)
    task.update_linear_start(model, 2.5)
    state = json.loads(json.dumps(task.train_state(model)))
    assert state == {"ls_best": 2.0, "ls_wait": 1, "ls_evals": 2}
    twin, twin_model = _babi_task()
    twin.load_train_state(twin_model, state)
    assert (twin._ls_best, twin._ls_wait, twin._ls_evals) == (2.0, 1, 2)


@needs_babi
def test_babi_evaluate_never_changes_the_training_phase():
    """Defect 5: the final dev evaluation switched linear start off, then test was
    scored in the other mode than the checkpoint (results.json 70.9%, eval 32.2%)."""
    task, model = _babi_task()
    assert model.linear
    for _ in range(4):
        task.evaluate(model, "dev", batch_size=500)
    assert model.linear and task.train_state(model) == {"ls_best": None, "ls_wait": 0,
                                                        "ls_evals": 0}
    assert task.observe_dev(model, {"loss": 2.0}) is False
    assert task.observe_dev(model, {"loss": 3.0}) is True and not model.linear


@needs_babi
@pytest.mark.parametrize("patience", [1, 2])
def test_babi_results_json_matches_eval_of_the_same_checkpoint(tmp_path, capsys, patience):
    """Defect 5, end to end: training ends during or just after linear start; every
    test metric of results.json is what ``memnets eval`` gives on the same checkpoint."""
    run = tmp_path / "run"
    train(load_config("babi-task1", [f"data.dir={SHARED_DATA}", "model.embed_dim=8",
                                     "trainer.max_epochs=2", "data.batch_size=64",
                                     f"model.ls_patience={patience}",
                                     "trainer.progress=false", "trainer.tensorboard=false"]),
          run, quiet=True)
    results = json.loads((run / "results.json").read_text())
    capsys.readouterr()  # only what eval prints
    assert main(["eval", str(run), "--split", "test", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {k: out[k] for k in results["test"]} == pytest.approx(results["test"])


# ----------------------------------------------------------------- 6: one writer


def test_a_second_writer_is_refused_while_a_run_is_locked(tmp_path):
    """Defect 6: two trainings on one --out both started and deleted each other's files."""
    run = tmp_path / "run"
    with ckpt.RunLock(run):
        with pytest.raises(TrainingError, match=r"in use: another training \(process \d+\)"):
            train(load_config("adding", TINY + ["trainer.max_steps=2"]), run, quiet=True)
        assert not (run / "checkpoints").exists()
    train(load_config("adding", TINY + ["trainer.max_steps=2"]), run, quiet=True)  # free again


def test_pruning_removes_only_folders_the_engine_names(tmp_path):
    """Defect 6: a user's step-00000020-mybackup folder was deleted."""
    keep = ["step-00000020-mybackup", "step-1", "my-notes", ".hidden", "step-00000002.x"]
    for name in keep:
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
    train(load_config("adding", TINY + ["trainer.max_steps=20", "trainer.checkpoint_every=5",
                                        "trainer.eval_every=10"]), tmp_path, quiet=True)
    names = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert set(keep) <= names
    assert {n for n in names if n.startswith("step-000000") and "-my" not in n
            and n != "step-00000002.x"} <= {"step-00000020", "step-00000010", "step-00000020.1"}


# ----------------------------------------------------------------- 7: NaN never kept as good


def test_non_finite_weights_are_never_written_as_a_good_checkpoint(tmp_path):
    """Defect 7: with eval_every=1 and lr=inf, step 1 held non-finite weights and both
    pointers named it "the last good checkpoint"."""
    sets = TINY + ["optimizer.name=sgd", "optimizer.lr=.inf", "optimizer.grad_clip=null",
                   "trainer.eval_every=1", "trainer.max_steps=5"]
    with pytest.raises(TrainingError, match="NaN|nan|inf"):
        train(load_config("adding", sets), tmp_path, quiet=True)
    for which in ("latest", "best"):
        folder = ckpt.read_pointer(tmp_path, which)
        if folder is not None:
            w = load_file(str(folder / "model.safetensors"))
            assert all(torch.isfinite(v).all() for v in w.values())


@pytest.mark.parametrize("when", [["trainer.checkpoint_every=1", "trainer.eval_every=null"],
                                  ["trainer.checkpoint_every=1", "trainer.eval_every=3"]])
def test_a_checkpoint_between_evaluations_never_keeps_non_finite_weights(tmp_path, when):
    """Defect 7 without an evaluation first: a periodic checkpoint falls due at the
    step where the weights become non-finite."""
    sets = TINY + ["optimizer.name=sgd", "optimizer.lr=.inf", "optimizer.grad_clip=null",
                   "trainer.max_steps=5", *when]
    with pytest.raises(TrainingError, match="NaN|nan|inf"):
        train(load_config("adding", sets), tmp_path, quiet=True)
    for which in ("latest", "best"):
        folder = ckpt.read_pointer(tmp_path, which)
        if folder is not None:
            w = load_file(str(folder / "model.safetensors"))
            assert all(torch.isfinite(v).all() for v in w.values()), which


def test_nan_is_never_the_best_metric():
    assert not _better(float("nan"), None, higher=False)
    assert not _better(float("nan"), 1.0, higher=True)
    assert _better(0.5, float("nan"), higher=False)
    assert _better(0.5, None, higher=False) and not _better(0.5, 0.4, higher=False)


# ----------------------------------------------------------------- 8, 10: values checked first


BAD_VALUES = [
    ("optimizer.grad_clip=-1", "optimizer.grad_clip"), ("schedule.gamma=-1", "schedule.gamma"),
    ("model.hidden_size=0", "model.hidden_size"), ("model.num_layers=0", "model.num_layers"),
    ("model.num_layers=-2", "model.num_layers"), ("trainer.max_steps=-1", "trainer.max_steps"),
    ("trainer.early_stopping=0", "trainer.early_stopping"),
    ("trainer.max_minutes=-1", "trainer.max_minutes"), ("trainer.eval_every=0", "eval_every"),
    ("trainer.log_every=0", "trainer.log_every"),
    ("trainer.checkpoint_every=0", "checkpoint_every"), ("optimizer.lr=-0.1", "optimizer.lr"),
    ("optimizer.eps=-1", "optimizer.eps"), ("optimizer.betas=[0.9,1.0]", "optimizer.betas"),
    ("optimizer.betas=[-0.1,0.9]", "optimizer.betas"), ("model.dropout=1.0", "model.dropout"),
    ("model.dropout=-0.1", "model.dropout"), ("trainer.threads=0", "trainer.threads"),
    ("model.cell=nope", "model.cell"), ("data.batch_size=0", "data.batch_size"),
    ("optimizer.lr=.nan", "optimizer.lr"), ("trainer.max_epochs=0", "trainer.max_epochs"),
    ("trainer.device=gpu", "trainer: device"), ("data.T=0", "data.T"),
]


@pytest.mark.parametrize("override,field", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_values_are_configuration_errors_naming_the_field(override, field, tmp_path,
                                                              capsys):
    """Defect 8: grad_clip=-1 and gamma=-1 did gradient ascent with exit 0; the others
    failed late or not at all."""
    with pytest.raises(ConfigError, match=field.replace(".", r"[.:] ?").replace(": ", ".*")):
        load_config("adding", [override])
    out = tmp_path / "run"
    assert main(["train", "adding", "--out", str(out), "--quiet", "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected" in err and "got" in err
    assert not out.exists()


@pytest.mark.parametrize("recipe,override,field", [
    ("babi-task1", "model.embed_dim=0", "embed_dim"), ("babi-task1", "model.hops=0", "hops"),
    ("babi-task1", "model.random_noise=1.5", "random_noise"),
    ("ptb_small", "data.bptt=0", "bptt"), ("ptb_small", "model.embedding_size=0",
                                            "embedding_size"),
    ("sst2_lstm", "model.embedding_dropout=1.0", "embedding_dropout"),
    ("atis-bilstm", "model.word_dim=0", "word_dim"),
    ("atis-bilstm", "data.min_freq=0", "min_freq"),
])
def test_task_fields_are_range_checked(recipe, override, field):
    with pytest.raises(ConfigError, match=field):
        load_config(recipe, [override])


def test_a_failed_resume_leaves_config_yaml_untouched(tmp_path, capsys):
    """Defect 10: ``--resume --set trainer.log_every=0`` rewrote config.yaml and bricked
    the run."""
    run = tmp_path / "run"
    sets = sum((["--set", s] for s in TINY + ["trainer.max_steps=4"]), [])
    assert main(["train", "adding", "--out", str(run), "--quiet", *sets]) == 0
    before = (run / "config.yaml").read_bytes()
    assert main(["train", "adding", "--out", str(run), "--resume", "--quiet", *sets,
                 "--set", "trainer.log_every=0"]) == 2
    assert (run / "config.yaml").read_bytes() == before
    assert main(["train", "adding", "--out", str(run), "--resume", "--quiet", *sets,
                 "--set", "trainer.max_steps=6"]) == 0


def test_a_resume_refused_by_the_checkpoint_leaves_config_yaml_untouched(tmp_path):
    """Defect 10 inside the trainer: the new settings pass the recipe checks, then the
    checkpoint refuses them (other weight shapes); config.yaml must not have changed."""
    run = tmp_path / "run"
    sets = sum((["--set", s] for s in TINY + ["trainer.max_steps=4"]), [])
    assert main(["train", "adding", "--out", str(run), "--quiet", *sets]) == 0
    before = (run / "config.yaml").read_bytes()
    assert main(["train", "adding", "--out", str(run), "--resume", "--quiet", *sets,
                 "--set", "model.hidden_size=16", "--set", "trainer.max_steps=6"]) != 0
    assert (run / "config.yaml").read_bytes() == before
    assert main(["train", "adding", "--out", str(run), "--resume", "--quiet", *sets,
                 "--set", "trainer.max_steps=6"]) == 0


# ----------------------------------------------------------------- 9: compare


def test_compare_refuses_to_reuse_a_run_of_other_settings(tmp_path, capsys):
    """Defect 9: T=10 weights were re-scored on T=50 data and config.yaml rewritten."""
    out = tmp_path / "cmp"
    sets = sum((["--set", s] for s in TINY + ["trainer.max_steps=4"]), [])
    assert main(["compare", "adding", "--models", "lstm", "--out", str(out), "--quiet",
                 *sets]) == 0
    before = (out / "lstm" / "config.yaml").read_bytes()
    capsys.readouterr()
    assert main(["compare", "adding", "--models", "lstm", "--out", str(out), "--quiet",
                 *sets, "--set", "data.T=20"]) == 2
    err = capsys.readouterr().err
    assert "data.T (12 there, 20 asked)" in err
    assert (out / "lstm" / "config.yaml").read_bytes() == before
    assert main(["compare", "adding", "--models", "lstm", "--out", str(out), "--quiet",
                 *sets]) == 0  # the same settings: reused


# ----------------------------------------------------------------- 12: always a checkpoint


def test_rewriting_a_step_never_leaves_the_pointer_dangling(tmp_path, monkeypatch):
    """Defect 12a: re-saving a step removed the folder before the new one was in place."""
    model = torch.nn.Linear(3, 2)
    ckpt.save_checkpoint(tmp_path, "step-00000005", model=model, meta={"step": 5}, tensors={})
    real = os.replace

    def kill_at_folder_rename(src, dst):
        if Path(dst).name.startswith("step-"):
            raise OSError("killed (simulated)")
        real(src, dst)

    monkeypatch.setattr(os, "replace", kill_at_folder_rename)
    with pytest.raises(OSError, match="simulated"):
        ckpt.save_checkpoint(tmp_path, "step-00000005", model=model, meta={"step": 5},
                             tensors={}, pointers=("latest", "best"))
    monkeypatch.setattr(os, "replace", real)
    assert ckpt.read_pointer(tmp_path, "latest") is not None
    again = ckpt.save_checkpoint(tmp_path, "step-00000005", model=model, meta={"step": 5},
                                 tensors={})
    assert again.name == "step-00000005.1" and ckpt.read_pointer(tmp_path) == again
    assert not (tmp_path / "checkpoints" / "step-00000005").exists()  # pruned after


def test_a_checkpoint_without_its_pointer_is_found_on_resume(tmp_path, monkeypatch):
    """Defect 12b: disk full at the first pointer write left a complete checkpoint
    that --resume could not find."""
    sets = TINY + ["trainer.max_steps=10", "trainer.checkpoint_every=5",
                   "trainer.eval_every=null", "trainer.deterministic=true"]
    train(load_config("adding", sets), tmp_path / "ref", quiet=True)
    real = ckpt.atomic_write_text

    def disk_full(path, text):
        if Path(path).name == "latest.json":
            raise OSError(28, "No space left on device (simulated)")
        real(path, text)

    monkeypatch.setattr(ckpt, "atomic_write_text", disk_full)
    with pytest.raises(OSError, match="simulated"):
        train(load_config("adding", sets), tmp_path / "cut", quiet=True)
    monkeypatch.setattr(ckpt, "atomic_write_text", real)
    assert not (tmp_path / "cut" / "checkpoints" / "latest.json").exists()
    folder, note = ckpt.find_latest(tmp_path / "cut")
    assert folder.name == "step-00000005" and "missing" in note
    train(load_config("adding", sets), tmp_path / "cut", resume=True, quiet=True)
    a = load_file(str(ckpt.read_pointer(tmp_path / "ref") / "model.safetensors"))
    b = load_file(str(ckpt.read_pointer(tmp_path / "cut") / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_dangling_or_broken_pointer_falls_back_to_the_newest_complete_folder(tmp_path):
    train(load_config("adding", TINY + ["trainer.max_steps=10", "trainer.checkpoint_every=5",
                                        "trainer.eval_every=null"]), tmp_path, quiet=True)
    pointer = tmp_path / "checkpoints" / "latest.json"
    newest = ckpt.read_pointer(tmp_path)
    for text in ('{"dir": "step-00000999"}', "{not json", '{"dir": "../../etc"}', "[]"):
        pointer.write_text(text)
        folder, note = ckpt.find_latest(tmp_path)
        assert folder == newest and note


# ----------------------------------------------------------------- 13, 14, 15: recipe files


def test_extends_cycles_are_named(tmp_path):
    """Defect 13: a cycle between recipe files recursed to Python's limit."""
    (tmp_path / "a.yaml").write_text("extends: ./sub/../b.yaml\ntask: adding\n")
    (tmp_path / "b.yaml").write_text(f"extends: {tmp_path / 'a.yaml'}\n")
    (tmp_path / "sub").mkdir()
    with pytest.raises(ConfigError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_raw(str(tmp_path / "a.yaml"))
    (tmp_path / "c.yaml").write_text("extends: c.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_raw(str(tmp_path / "c.yaml"))


def test_extends_cycles_through_other_spellings_are_named(tmp_path):
    """Each lap spells the files differently: only resolved paths find the cycle."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.yaml").write_text("extends: ./sub/../b.yaml\ntask: adding\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_raw(str(tmp_path / "a.yaml"))
    (tmp_path / "c.yaml").write_text("extends: ./c.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_raw(str(tmp_path / "sub" / ".." / "c.yaml"))


def test_duplicate_yaml_keys_are_errors_naming_the_key(tmp_path):
    """Defect 15: a key given twice silently took the last value."""
    p = tmp_path / "r.yaml"
    p.write_text("task: adding\ntrainer:\n  seed: 1\n  max_steps: 5\n  seed: 2\n")
    with pytest.raises(ConfigError, match=r"r\.yaml:5: .*'seed' is given twice"):
        load_raw(str(p))


def test_non_utf8_recipe_names_file_and_line(tmp_path):
    """Defect 14: UnicodeDecodeError ... position 3168."""
    p = tmp_path / "r.yaml"
    p.write_bytes(b"task: adding\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"r\.yaml:2: expected UTF-8 text.*0xe9"):
        load_raw(str(p))


# ----------------------------------------------------------------- 14: run-directory files


def _finished(tmp_path) -> Path:
    run = tmp_path / "run"
    train(load_config("adding", TINY + ["trainer.max_steps=4"]), run, quiet=True)
    return run


@pytest.mark.parametrize("target,content,match", [
    ("model", b"not safetensors", r"model\.safetensors: expected a safetensors file"),
    ("trainer", b"\x00\x01", r"trainer\.safetensors: expected a safetensors file"),
    ("trainer.json", b"{", r"trainer\.json:1: expected JSON"),
    ("trainer.json", b"{}", r"trainer\.json: expected the field 'optimizer'"),
    ("trainer.json", b"\xff\xfe", r"trainer\.json: expected UTF-8 JSON"),
    ("latest.json", b"{}", r"latest\.json: expected the field 'dir'"),
    ("task.json", b"[1", r"task\.json:1: expected JSON"),
    ("config.yaml", b"task: [", r"config\.yaml:1: invalid YAML"),
    ("config.yaml", b"\xff", r"config\.yaml:1: expected UTF-8"),
])
def test_broken_run_files_are_one_line_naming_the_file(tmp_path, target, content, match):
    run = _finished(tmp_path)
    folder = ckpt.read_pointer(run)
    path = {"model": folder / "model.safetensors", "trainer": folder / "trainer.safetensors",
            "trainer.json": folder / "trainer.json",
            "latest.json": run / "checkpoints" / "latest.json",
            "task.json": run / "task.json", "config.yaml": run / "config.yaml"}[target]
    if target == "latest.json":  # the only checkpoint: nothing to fall back to
        for other in ckpt.complete_checkpoints(run):
            if other != folder:
                import shutil
                shutil.rmtree(other)
        (run / "checkpoints" / "best.json").unlink(missing_ok=True)
    path.write_bytes(content)
    config = load_config("adding", TINY + ["trainer.max_steps=6"])
    with pytest.raises(MemnetsError, match=match):
        if target in ("model", "task.json", "config.yaml"):
            load_run(run, which="latest")
        else:
            train(config, run, resume=True, quiet=True) if target != "latest.json" else \
                ckpt.read_pointer(run)


@pytest.mark.parametrize("key", ["optimizer", "schedule", "progress", "rng"])
@pytest.mark.parametrize("how", ["drop", "list", "string"])
def test_each_trainer_json_section_is_checked_before_use(tmp_path, key, how):
    run = _finished(tmp_path)
    path = ckpt.read_pointer(run) / "trainer.json"
    meta = json.loads(path.read_text())
    if how == "drop":
        del meta[key]
    else:
        meta[key] = [1] if how == "list" else "x"
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError,
                       match=rf"trainer\.json: expected (the field '{key}'|'{key}' to be dict)"):
        train(load_config("adding", TINY + ["trainer.max_steps=6"]), run, resume=True,
              quiet=True)


@pytest.mark.skipif(not (SHARED_DATA / "babi/tasks_1-20_v1-2/en").is_dir(), reason="no bAbI")
def test_a_task_state_missing_its_vocabulary_names_task_json(tmp_path):
    """Defect 14: KeyError 'vocab'."""
    run = tmp_path / "run"
    train(load_config("babi-task1", [f"data.dir={SHARED_DATA}", "model.embed_dim=4",
                                     "trainer.max_steps=2", "trainer.progress=false",
                                     "trainer.tensorboard=false"]), run, quiet=True)
    (run / "task.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"task\.json: expected the state of task "
                                              r"'babi'.*'vocab'"):
        load_run(run)


def test_weights_of_another_dtype_are_refused(tmp_path):
    """Defect 17: int32 weights were accepted."""
    run = _finished(tmp_path)
    path = ckpt.read_pointer(run, "best") / "model.safetensors"
    w = load_file(str(path))
    save_file({k: v.to(torch.int32) for k, v in w.items()}, str(path))
    with pytest.raises(CheckpointError, match="dtype torch.int32, the model expects "
                                              "torch.float32"):
        load_run(run)


def test_checkpoint_files_get_the_usual_permissions(tmp_path):
    """Defect 17: safetensors were written 0600 beside 0644 JSON."""
    old = os.umask(0o022)
    try:
        run = _finished(tmp_path)
    finally:
        os.umask(old)
    for f in ckpt.read_pointer(run).iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f


# ----------------------------------------------------------------- 16, 17: late failures, out


@dataclass
class NoTestData(DataConfig):
    T: int = 12
    train_size: int = 64
    dev_size: int = 16
    test_size: int = 16
    seed: int = 0


@register_task("test_no_test")
class NoTestTask(AddingTask):
    """The adding task whose test split turns out empty."""

    DataConfig = NoTestData

    def dataset(self, split):
        return [] if split == "test" else super().dataset(split)


def test_a_missing_split_is_found_before_the_first_step(tmp_path):
    """Defect 16: a missing test split was found only after all training."""
    config = load_config("adding", TINY + ["task=test_no_test", "data.train_size=64",
                                           "data.dev_size=16", "data.test_size=16"])
    with pytest.raises(DataError, match="test split has no data"):
        train(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run" / "checkpoints").exists()
    config.trainer.test = False  # not needed: trains
    train(config, tmp_path / "run2", quiet=True)


def test_out_on_a_folder_that_is_not_a_run_is_refused(tmp_path, capsys):
    """Defect 17: --out on an existing non-run directory overwrote its files."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "metrics.csv").write_text("precious")
    (folder / "notes.txt").write_text("mine")
    assert main(["train", "adding", "--out", str(folder), "--quiet",
                 "--set", "trainer.max_steps=2"]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert (folder / "metrics.csv").read_text() == "precious"


@dataclass
class NanData(NoTestData):
    pass


@register_task("test_nan_metric")
class NanMetricTask(AddingTask):
    DataConfig = NanData

    def metrics(self, stats):
        return {**super().metrics(stats), "spread": float("nan")}


def test_eval_prints_valid_json_for_a_nan_metric(tmp_path, capsys):
    """Defect 17: eval printed NaN, which is not JSON."""
    run = tmp_path / "run"
    train(load_config("adding", TINY + ["task=test_nan_metric", "trainer.max_steps=3"]), run,
          quiet=True)
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "dev", "--json"]) == 0
    out = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(c))
    assert out["spread"] == "nan" and math.isfinite(out["mse"])
    json.loads((run / "results.json").read_text(), parse_constant=lambda c: pytest.fail(c))


# ----------------------------------------------------------------- clipping (a planted bug)


def test_gradient_clipping_bounds_one_sgd_step_and_logs_the_norm_before_clipping(tmp_path):
    """Clipping moved before ``loss.backward()`` went unnoticed: one SGD step with a tiny
    grad_clip moves the weights by at most lr * grad_clip, and the logged norm is the
    gradient's norm before clipping."""
    from memnets.train import distributed as ddp
    from memnets.train.trainer import make_task

    lr, clip = 0.5, 1e-3
    config = load_config("adding", TINY + ["optimizer.name=sgd", f"optimizer.lr={lr}",
                                           f"optimizer.grad_clip={clip}", "trainer.max_steps=1",
                                           "trainer.log_every=1", "trainer.eval_every=1"])
    ddp.seed_everything(config.trainer.seed, False)  # what the trainer does first
    task = make_task(config)
    task.setup()
    before = task.build_model(config.model).state_dict()
    train(config, tmp_path, quiet=True)
    after = load_file(str(ckpt.read_pointer(tmp_path) / "model.safetensors"))
    moved = math.sqrt(sum(float((after[k] - before[k]).square().sum()) for k in before))
    assert 0 < moved <= lr * clip * (1 + 1e-4)  # float32 rounding
    row = next(json.loads(line) for line in (tmp_path / "metrics.jsonl").open()
               if json.loads(line)["split"] == "train")
    assert row["grad_norm"] > clip * 10  # the pre-clip norm of a fresh model's gradient


# ----------------------------------------------------------------- 8: every range entry

# written out, not read from RANGES: an entry removed from a table must fail here
RANGED = {
    "data": ["batch_size", "eval_batch_size", "num_workers"],
    "model": ["hidden_size", "num_layers", "dropout"],
    "optimizer": ["lr", "momentum", "weight_decay", "betas", "eps", "alpha", "grad_clip"],
    "schedule": ["gamma", "step_size", "start_epoch", "patience", "threshold",
                 "warmup_steps", "min_lr", "total_steps"],
    "trainer": ["max_epochs", "max_steps", "max_minutes", "eval_every", "evals_per_epoch",
                "checkpoint_every", "early_stopping", "seed", "log_every", "threads"],
}
RANGE_CASES = [(s, n) for s, names in RANGED.items() for n in names]


def _just_outside(spec: str, is_int: bool):
    import re

    m = re.fullmatch(r"(>=|>)\s*(\S+)", spec)
    if m:
        bound = float(m.group(2))
        v = bound - 1 if m.group(1) == ">=" else bound
    else:
        lo = re.fullmatch(r"([\[(])\s*(\S+),.*", spec)
        v = float(lo.group(2)) - 1 if lo.group(1) == "[" else float(lo.group(2))
    return int(v) if is_int else float(v)


@pytest.mark.parametrize("section,name", RANGE_CASES, ids=[f"{s}.{n}" for s, n in RANGE_CASES])
def test_every_ranges_entry_is_enforced(section, name):
    """A value just outside each declared range is refused, naming the field."""
    import typing

    from memnets.config import OptimizerConfig, ScheduleConfig, TrainerConfig
    from memnets.tasks import get_task

    task = get_task("adding")
    cls = {"data": task.DataConfig, "model": task.ModelConfig, "optimizer": OptimizerConfig,
           "schedule": ScheduleConfig, "trainer": TrainerConfig}[section]
    ranges: dict = {}
    for klass in reversed(cls.__mro__):
        ranges.update(vars(klass).get("RANGES", {}))
    assert name in ranges, f"{section}.{name} has no RANGES entry"
    hint = str(typing.get_type_hints(cls)[name])
    v = _just_outside(ranges[name], "int" in hint and "float" not in hint)
    value = f"[{v},{v}]" if "list" in hint else repr(v)
    overrides = [f"{section}.{name}={value}"]
    if name == "evals_per_epoch":
        overrides.append("trainer.eval_every=null")
    with pytest.raises(ConfigError, match=rf"{section}[.:] ?{name}: expected"):
        load_config("adding", overrides)


def test_a_checkpoint_with_the_older_layer_names_still_loads(tmp_path):
    """The encoder builder renamed the memory tasks' layers (``layers.K`` became
    ``encoder.layers.K``); weights written before load unchanged."""
    run = _finished(tmp_path)
    path = ckpt.read_pointer(run, "best") / "model.safetensors"
    w = load_file(str(path))
    save_file({k.removeprefix("encoder."): v for k, v in w.items()}, str(path))
    assert any(k.startswith("layers.") for k in load_file(str(path)))
    _, _, model = load_run(run)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in w.items())
