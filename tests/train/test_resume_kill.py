"""Kill -9 at several points of a run, ``--resume``, and get the uninterrupted run's
weights bit for bit: the adding problem with dropout, bAbI task 1 (linear start,
random noise), an ATIS BiLSTM-CRF tagger (dropout, word dropout) and the PTB
small LSTM, all with tiny budgets in deterministic mode.

The kill is a real SIGKILL of the training process (``killer.py``), at a chosen
checkpoint: after it is complete, between its folder and its pointers, in the
middle of writing its folder, or as the folder of a step written again is renamed
into place.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA
from safetensors.torch import load_file

from memnets.train import checkpoint as ckpt

HERE = Path(__file__).resolve().parent
QUIET = ["trainer.progress=false", "trainer.tensorboard=false", "trainer.deterministic=true",
         "trainer.threads=1"]

ADDING = ["data.T=12", "data.train_size=400", "data.dev_size=40", "data.test_size=40",
          "data.batch_size=8", "model.hidden_size=8", "model.num_layers=2", "model.dropout=0.3",
          "trainer.log_every=5", "trainer.max_steps=60", "trainer.checkpoint_every=7",
          "trainer.eval_every=20"]
BABI = [f"data.dir={SHARED_DATA}", "data.batch_size=64", "model.embed_dim=10",
        "trainer.max_epochs=5", "trainer.log_every=5", "trainer.checkpoint_every=6",
        "schedule.start_epoch=3", "schedule.step_size=1"]
ATIS = [f"data.dir={SHARED_DATA}", "data.download=false", "model.hidden_size=12",
        "model.word_dim=8", "data.batch_size=64", "trainer.max_steps=24",
        "trainer.eval_every=12", "trainer.checkpoint_every=5", "trainer.log_every=4",
        "trainer.early_stopping=null"]
PTB = [f"data.dir={SHARED_DATA}", "data.download=false", "model.hidden_size=12",
       "data.bptt=5", "trainer.max_steps=30", "trainer.eval_every=15",
       "trainer.checkpoint_every=4", "trainer.log_every=5", "trainer.test=false"]

CASES = {
    "adding": ("adding", ADDING, None),
    "babi-task1": ("babi-task1", BABI, "babi/tasks_1-20_v1-2/en"),
    "atis-bilstm-crf": ("atis-bilstm-crf", ATIS, "atis_slotgated"),
    "ptb_small": ("ptb_small", PTB, "ptb"),
}
POINTS = [("adding", "after", 2), ("adding", "before-pointer", 3), ("adding", "mid-folder", 5),
          ("babi-task1", "after", 3), ("babi-task1", "before-pointer", 5),
          ("atis-bilstm-crf", "after", 2), ("atis-bilstm-crf", "mid-folder", 4),
          ("ptb_small", "after", 2), ("ptb_small", "before-pointer", 4),
          # the first pointer never written: resume must find the folder by itself
          ("adding", "before-pointer", 1),
          # between the last two evaluations, where linear start's counters decide
          ("babi-task1", "after", 15), ("babi-task1", "before-pointer", 16),
          # a step written again (checkpoint 7 re-saves step 30), killed at its rename
          ("babi-task1", "folder-rename", 7)]


def _env() -> dict:
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)


def _args(recipe: str, sets: list[str], out: Path) -> list[str]:
    args = ["train", recipe, "--out", str(out), "--quiet"]
    for s in sets + QUIET:
        args += ["--set", s]
    return args


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], env=_env(), timeout=600,
                          capture_output=True, text=True, **kw)


def _weights(run: Path, which: str) -> dict:
    pointer = json.loads((run / "checkpoints" / f"{which}.json").read_text())
    return load_file(str(run / "checkpoints" / pointer["dir"] / "model.safetensors"))


def _metrics(run: Path) -> dict:
    r = json.loads((run / "results.json").read_text())
    return {k: r[k] for k in ("steps", "best_step", "epochs_completed", "dev", "test") if k in r}


_REFERENCE: dict[str, Path] = {}


def _reference(name: str, tmp_path_factory) -> Path:
    """The uninterrupted run of a case (trained once per session)."""
    if name not in _REFERENCE:
        recipe, sets, _ = CASES[name]
        out = tmp_path_factory.mktemp(f"ref-{name}") / "run"
        done = _run(["-m", "memnets", *_args(recipe, sets, out)])
        assert done.returncode == 0, done.stderr
        _REFERENCE[name] = out
        if name == "babi-task1":  # the budget covers the end of linear start
            assert not bool(_weights(out, "latest")["linear_mode"]), "linear start never ended"
    return _REFERENCE[name]


@pytest.mark.slow
@pytest.mark.parametrize("name,point,n", POINTS, ids=[f"{c}-{p}-{n}" for c, p, n in POINTS])
def test_sigkill_then_resume_is_bit_identical(name, point, n, tmp_path, tmp_path_factory):
    recipe, sets, needs = CASES[name]
    if needs is not None and not (SHARED_DATA / needs).is_dir():
        pytest.skip(f"{SHARED_DATA / needs} not found (set MEMNETS_DATA)")
    ref = _reference(name, tmp_path_factory)
    cut = tmp_path / "cut"
    killed = _run([str(HERE / "killer.py"), point, str(n), *_args(recipe, sets, cut)])
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
    assert not (cut / "results.json").exists()
    for which in ("latest", "best"):  # at every instant a pointer names a complete folder
        if (cut / "checkpoints" / f"{which}.json").exists():
            assert ckpt.read_pointer(cut, which) is not None, f"{which}.json dangles"
    resumed = _run(["-m", "memnets", *_args(recipe, sets, cut), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for which in ("latest", "best"):
        a, b = _weights(ref, which), _weights(cut, which)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{which}: {k} differs after the resume"
    assert _metrics(ref) == _metrics(cut)
