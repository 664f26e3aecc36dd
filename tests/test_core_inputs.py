"""Bad arguments and inputs to the recurrent core and the models are refused at the
boundary with our own messages (what was expected, what came); the task metrics and
``Task.evaluate`` against references written here."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import memnets
from memnets.cells import (
    ElmanCell,
    GRUCell,
    IndRNNCell,
    IRNNCell,
    JordanCell,
    LSTMCell,
    LSTMNCell,
    SCRNCell,
    cell_names,
    make_cell,
)
from memnets.data.babi import EncodedSet, build_vocab, parse_lines
from memnets.errors import ConfigError, MemnetsError
from memnets.layers import make_stack, stack_names
from memnets.models.babi_lstm import BabiLSTM
from memnets.models.classifier import SequenceClassifier
from memnets.models.crf import LinearChainCRF
from memnets.models.language_model import RNNLanguageModel
from memnets.models.memn2n import MemN2N
from memnets.models.tagger import SlotTagger
from memnets.tasks import get_task
from memnets.tasks.babi import BabiDataConfig, BabiModelConfig, BabiTask
from memnets.tasks.language_model import (
    MAX_GENERATE_LENGTH,
    CharLanguageModelTask,
    LMDataConfig,
    LMModelConfig,
)
from memnets.tasks.memory import MemoryModelConfig
from memnets.tasks.slot_filling import SlotDataConfig, SlotFillingTask, SlotModelConfig

# --------------------------------------------------------------------- sizes

BAD_SIZES = [
    (0, r"expected hidden_size >= 1, got 0"),
    (-3, r"expected hidden_size >= 1, got -3"),
    (2.5, r"expected hidden_size to be an int >= 1, got 2\.5 \(float\)"),
    (True, r"expected hidden_size to be an int >= 1, got True \(bool\)"),
    ("8", r"expected hidden_size to be an int >= 1, got '8' \(str\)"),
]


@pytest.mark.parametrize("name", cell_names())
@pytest.mark.parametrize("value, message", BAD_SIZES, ids=[repr(v) for v, _ in BAD_SIZES])
def test_make_cell_refuses_a_bad_hidden_size(name, value, message):
    with pytest.raises(ConfigError, match=message):
        make_cell(name, input_size=4, hidden_size=value)


@pytest.mark.parametrize("name", cell_names())
def test_make_cell_refuses_a_bad_input_size(name):
    with pytest.raises(ValueError, match=r"expected input_size >= 1, got 0"):
        make_cell(name, input_size=0, hidden_size=4)
    with pytest.raises(ValueError, match=r"expected input_size to be an int >= 1, got 4\.0"):
        make_cell(name, input_size=4.0, hidden_size=4)


CELL_CLASSES = [ElmanCell, GRUCell, IndRNNCell, IRNNCell, JordanCell, LSTMCell, LSTMNCell,
                SCRNCell]


@pytest.mark.parametrize("cls", CELL_CLASSES, ids=lambda c: c.__name__)
def test_cell_constructors_refuse_bad_sizes(cls):
    """Built directly, without the registry, the cells check their sizes as well."""
    for args, message in [((4, 0), "hidden_size >= 1, got 0"), ((0, 4), "input_size >= 1, got 0"),
                          ((4, -1), "hidden_size >= 1, got -1")]:
        with pytest.raises(ConfigError, match=message):
            cls(*args)
    cls(4, 3)  # a good size still builds


def test_cell_specific_sizes_are_checked():
    with pytest.raises(ValueError, match=r"expected output_size >= 1, got 0"):
        JordanCell(4, 3, output_size=0)
    with pytest.raises(ValueError, match=r"expected context_size >= 1, got 0"):
        SCRNCell(4, 3, context_size=0)
    with pytest.raises(ValueError, match=r"expected proj_size >= 0, got -1"):
        LSTMCell(4, 3, proj_size=-1)
    with pytest.raises(ValueError, match=r"expected proj_size to be an int >= 0, got True"):
        LSTMCell(4, 3, proj_size=True)
    with pytest.raises(ValueError, match=r"expected attention_size >= 1, got 0"):
        LSTMNCell(4, 3, attention_size=0)


@pytest.mark.parametrize("name", stack_names())
@pytest.mark.parametrize("sizes, message", [
    ((4, 0, 2), r"expected hidden_size >= 1, got 0"),
    ((0, 4, 2), r"expected input_size >= 1, got 0"),
    ((4, 4, 0), r"expected num_layers >= 1, got 0"),
    ((4, 4, -2), r"expected num_layers >= 1, got -2"),
    ((4, 4, True), r"expected num_layers to be an int >= 1, got True \(bool\)"),
    ((4, 4.0, 2), r"expected hidden_size to be an int >= 1, got 4\.0 \(float\)"),
])
def test_make_stack_refuses_bad_sizes(name, sizes, message):
    i, h, k = sizes
    with pytest.raises(ConfigError, match=message):
        make_stack(name, input_size=i, hidden_size=h, num_layers=k)


@pytest.mark.parametrize("cls", [memnets.RNN, memnets.LSTM, memnets.GRU], ids=lambda c: c.__name__)
@pytest.mark.parametrize("args, message", [
    ((16, 0), r"expected hidden_size >= 1, got 0"),
    ((0, 8), r"expected input_size >= 1, got 0"),
    ((16, 8, 0), r"expected num_layers >= 1, got 0"),
    ((16, 8, True), r"expected num_layers to be an int >= 1, got True \(bool\)"),
    ((16, 8, 2.0), r"expected num_layers to be an int >= 1, got 2\.0 \(float\)"),
])
def test_drop_ins_refuse_bad_sizes(cls, args, message):
    with pytest.raises(ConfigError, match=message):
        cls(*args)


def test_models_refuse_bad_sizes():
    with pytest.raises(ConfigError, match=r"expected vocab_size >= 1, got 0"):
        RNNLanguageModel(0, 4, 4)
    with pytest.raises(ConfigError, match=r"expected num_layers to be an int >= 1, got True"):
        RNNLanguageModel(5, 4, 4, True)
    with pytest.raises(ConfigError, match=r"expected vocab_size >= 1, got 0"):
        SequenceClassifier(0, 4, 4, 2)
    with pytest.raises(ConfigError, match=r"expected embedding_size >= 1, got 0"):
        SequenceClassifier(5, 0, 4, 2)
    with pytest.raises(ConfigError, match=r"expected vocab_size >= 1, got 0"):
        BabiLSTM(0)
    with pytest.raises(ConfigError, match=r"expected embed_dim >= 1, got 0"):
        MemN2N(5, embed_dim=0)
    with pytest.raises(ConfigError, match=r"expected memory_size >= 1, got 0"):
        MemN2N(5, memory_size=0)
    with pytest.raises(ConfigError, match=r"expected hidden_size to be an int >= 1, got 2\.5"):
        SlotModelConfig(hidden_size=2.5).validate()
    with pytest.raises(ConfigError, match=r"expected window >= 0, got -1"):
        SlotModelConfig(window=-1).validate()


def test_size_errors_are_memnets_errors():
    """The command line maps ConfigError to one line and exit status 2."""
    with pytest.raises(MemnetsError):
        make_cell("lstm", input_size=4, hidden_size=0)


# --------------------------------------------------------------------- inputs

H_IN, H = 16, 8


def _recurrent():
    return memnets.Recurrent(LSTMCell(H_IN, H), batch_first=True)


def _stacked():
    return memnets.Stacked([LSTMCell(H_IN, H), GRUCell(H, H)], batch_first=True)


def _bidirectional():
    return memnets.Bidirectional(GRUCell(H_IN, H), GRUCell(H_IN, H), batch_first=True)


LAYERS = {
    "Recurrent": _recurrent,
    "Stacked": _stacked,
    "Bidirectional": _bidirectional,
    "LSTM-fused": lambda: memnets.LSTM(H_IN, H, batch_first=True),
    "LSTM-generic": lambda: memnets.LSTM(H_IN, H, batch_first=True, fused=False),
    "GRU-fused-2-layers": lambda: memnets.GRU(H_IN, H, 2, batch_first=True),
    "RNN-bidirectional": lambda: memnets.RNN(H_IN, H, batch_first=True, bidirectional=True),
}
BAD_LENGTHS = {
    "float-tensor": (torch.tensor([7.0, 3.0, 2.0, 1.0]), "torch.float32"),
    "double-tensor": (torch.tensor([7.0, 3.0, 2.0, 1.0], dtype=torch.float64), "torch.float64"),
    "bool-tensor": (torch.tensor([True, True, False, True]), "torch.bool"),
    "float-list": ([7.0, 3.0, 2.0, 1.0], "torch.float32"),
    "bool-list": ([True, True, True, True], "torch.bool"),
}


def _x(N=4, L=7, dtype=torch.float32):
    return torch.randn(N, L, H_IN, generator=torch.Generator().manual_seed(0)).to(dtype)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("kind", BAD_LENGTHS)
def test_non_integer_lengths_are_refused(layer, kind):
    lengths, dtype = BAD_LENGTHS[kind]
    with pytest.raises(ValueError, match=rf"expected integer lengths .*got dtype {dtype}"):
        LAYERS[layer]()(_x(), lengths=lengths)


@pytest.mark.parametrize("layer", LAYERS)
def test_integer_lengths_of_any_kind_give_the_same_result(layer):
    torch.manual_seed(0)
    m = LAYERS[layer]().eval()
    ref, _ = m(_x(), lengths=torch.tensor([7, 3, 2, 1]))
    for lengths in ([7, 3, 2, 1], (7, 3, 2, 1), torch.tensor([7, 3, 2, 1], dtype=torch.int32)):
        out, _ = m(_x(), lengths=lengths)
        torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("layer", LAYERS)
def test_lengths_outside_one_to_L_are_refused(layer):
    m = LAYERS[layer]()
    with pytest.raises(ValueError, match=r"expected every length in \[1, 7\].*min 0"):
        m(_x(), lengths=[7, 0, 2, 1])
    with pytest.raises(ValueError, match=r"expected every length in \[1, 7\].*max 8"):
        m(_x(), lengths=[8, 3, 2, 1])
    with pytest.raises(ValueError, match=r"expected lengths of shape \(4,\)"):
        m(_x(), lengths=[7, 3, 2])


def test_models_refuse_non_integer_lengths():
    tokens = torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"expected integer lengths .*got dtype torch.float32"):
        SequenceClassifier(5, 2, 2, 2)(tokens, torch.tensor([3.0, 2.0]))
    crf = LinearChainCRF(3)
    with pytest.raises(ValueError, match=r"expected integer lengths .*got dtype torch.float32"):
        crf.log_partition(torch.randn(2, 4, 3), [4.0, 1.0])
    with pytest.raises(ValueError, match=r"expected integer lengths .*got dtype torch.bool"):
        crf.decode(torch.randn(2, 4, 3), torch.tensor([True, True]))
    tagger = SlotTagger(SlotModelConfig(hidden_size=4, word_dim=3), num_words=6, num_chars=1,
                        tags=["O", "B-a"])
    with pytest.raises(ValueError, match=r"expected integer lengths .*got dtype torch.float32"):
        tagger(tokens, None, torch.tensor([3.0, 2.5]))


@pytest.mark.parametrize("layer", LAYERS)
def test_zero_time_steps_are_refused(layer):
    m = LAYERS[layer]()
    with pytest.raises(ValueError, match=r"expected at least one time step, got input of shape "
                                         r"\(4, 0, 16\)"):
        m(torch.randn(4, 0, H_IN))
    with pytest.raises(ValueError, match=r"expected at least one time step, got input of shape "
                                         r"\(0, 16\)"):
        m(torch.randn(0, H_IN))  # unbatched
    with pytest.raises(ValueError, match=r"expected at least one time step"):
        m(torch.randn(4, 0, H_IN), lengths=[1, 1, 1, 1])


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64],
                         ids=str)
def test_input_of_another_dtype_is_named_with_the_fix(layer, dtype):
    m = LAYERS[layer]()
    with pytest.raises(ValueError, match=rf"expected input of dtype torch.float32 .*parameters\), "
                                         rf"got {dtype}; convert the input with "
                                         rf"\.to\(torch.float32\)"):
        m(_x(dtype=dtype))


@pytest.mark.parametrize("layer", LAYERS)
def test_integer_input_is_named(layer):
    with pytest.raises(ValueError, match=r"expected input of dtype torch.float32 .*got "
                                         r"torch.int64; recurrent layers take float features"):
        LAYERS[layer]()(torch.zeros(4, 7, H_IN, dtype=torch.long))


@pytest.mark.parametrize("layer", LAYERS)
def test_bf16_input_runs_under_cpu_autocast(layer):
    """The trainer's ``precision: bf16`` mode: autocast casts, so no dtype check."""
    m = LAYERS[layer]()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = m(_x(dtype=torch.bfloat16), lengths=[7, 3, 2, 1])
        out32, _ = m(_x())  # float32 input under autocast as well
    assert torch.isfinite(out.float()).all() and torch.isfinite(out32.float()).all()


@pytest.mark.parametrize("layer", LAYERS)
def test_float64_module_takes_float64_input(layer):
    torch.manual_seed(0)
    m = LAYERS[layer]().double()
    out, _ = m(_x(dtype=torch.float64), lengths=[7, 3, 2, 1])
    assert out.dtype == torch.float64
    with pytest.raises(ValueError, match=r"expected input of dtype torch.float64 .*got "
                                         r"torch.float32"):
        m(_x())


def test_packed_input_of_another_dtype_is_refused():
    from torch.nn.utils.rnn import pack_padded_sequence

    packed = pack_padded_sequence(_x(dtype=torch.float16), [7, 3, 2, 1], batch_first=True)
    for m in (memnets.LSTM(H_IN, H), memnets.LSTM(H_IN, H, fused=False), _recurrent()):
        with pytest.raises(ValueError, match=r"got torch.float16"):
            m(packed)


# --------------------------------------------------------------------- tasks

TEXT = "the cat sat on the mat. " * 60


def _char_task(tmp_path, bptt=8):
    (tmp_path / "t.txt").write_text(TEXT)
    task = CharLanguageModelTask(LMDataConfig(path=str(tmp_path / "t.txt"), bptt=bptt), tmp_path)
    task.setup()
    return task


def _char_model(task, seed=0):
    torch.manual_seed(seed)
    return task.build_model(LMModelConfig(hidden_size=8, embedding_size=8))


def test_lm_metrics_of_a_uniform_model_are_ln_V_and_V(tmp_path):
    task = _char_task(tmp_path)
    batches = list(task.batches("dev", batch_size=2))
    assert batches[-1][0].shape[1] < batches[0][0].shape[1]  # a short last batch
    model = _char_model(task)
    with torch.no_grad():
        model.decoder.weight.zero_()
        model.decoder.bias.zero_()  # logits 0: p = 1/V for every token
    V = len(task.vocab)
    m = task.evaluate(model, "dev", batch_size=2)
    assert m["loss"] == pytest.approx(math.log(V), rel=1e-5)
    assert m["perplexity"] == pytest.approx(V, rel=1e-4)
    assert m["bpc"] == pytest.approx(math.log2(V), rel=1e-5)


def test_lm_loss_is_the_mean_over_tokens_not_over_batches(tmp_path):
    """A trained-ish model whose loss differs from batch to batch, against a per-token
    reference: with a short last batch, a mean of batch means would differ."""
    task = _char_task(tmp_path)
    model = _char_model(task, seed=3).eval()
    total, count, means, state = 0.0, 0, [], None
    with torch.no_grad():
        for x, y in task.batches("dev", batch_size=2):
            logits, state = model(x, state)
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                 reduction="sum")
            total, count = total + float(ce), count + y.numel()
            means.append(float(ce) / y.numel())
    ref = total / count
    assert abs(sum(means) / len(means) - ref) > 1e-4  # the weighting matters here
    m = task.evaluate(model, "dev", batch_size=2)
    assert m["loss"] == pytest.approx(ref, rel=1e-5)
    assert m["perplexity"] == pytest.approx(math.exp(ref), rel=1e-5)


def test_generate_length_and_temperature_are_bounded(tmp_path, capsys):
    task = _char_task(tmp_path)
    model = _char_model(task)
    assert MAX_GENERATE_LENGTH == 100_000
    for bad in ("0", "-5", str(MAX_GENERATE_LENGTH + 1), "10000000000"):
        with pytest.raises(ValueError, match=r"expected --length in \[1, 100000\], got"):
            task.generate(model, ["--length", bad])
    for bad in ("nan", "inf", "-1"):
        with pytest.raises(ValueError, match=r"expected a finite --temperature >= 0"):
            task.generate(model, ["--length", "3", "--temperature", bad])
    assert len(task.generate(model, ["--prime", "the", "--length", "1", "--seed", "0"])) == 4
    with pytest.raises(SystemExit):
        task.generate(model, ["--help"])
    assert "1 to 100000" in capsys.readouterr().out


def _adding():
    cls = get_task("adding")
    task = cls(cls.DataConfig(T=6, train_size=16, dev_size=10, test_size=10))
    torch.manual_seed(0)
    return task, task.build_model(MemoryModelConfig(cell="gru", hidden_size=4, dropout=0.5,
                                                    num_layers=2))


def test_adding_predict_refuses_non_finite_values_and_repeated_marks():
    task, model = _adding()
    for bad in ("nan", "inf"):  # ("-inf" reads as an option to argparse)
        with pytest.raises(ValueError, match=rf"expected finite values, got {bad} at position 1"):
            task.predict(model, ["0.3", bad, "0.5", "--marks", "0,2"])
    with pytest.raises(ValueError, match=r"--marks: expected two different positions, got '1,1'"):
        task.predict(model, ["0.3", "0.9", "0.5", "--marks", "1,1"])
    out = task.predict(model, ["0.3", "0.9", "0.5", "--marks", "0,2"])
    assert "true sum 0.8000" in out


# Task.evaluate runs every batch in eval mode and gives the model back in its mode.

STORY = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Sandra moved to the garden.
6 Where is Daniel? \thallway\t4
"""


def _babi(tmp_path):
    examples = parse_lines(STORY.splitlines(), task=1)
    task = BabiTask(BabiDataConfig())
    task.vocab = build_vocab(examples)
    task._encoded["dev"] = EncodedSet(examples, task.vocab)  # no files needed
    torch.manual_seed(0)
    return task, task.build_model(BabiModelConfig(embed_dim=4, linear_start=False))


def _lm(tmp_path):
    task = _char_task(tmp_path)
    return task, _char_model(task)


def _slots(tmp_path):
    rows = [("switch on the lamp", "O O O B-device", "switch"),
            ("dim the fan", "O O B-device", "dim"),
            ("switch off the tv please", "O O O B-device O", "switch")]
    for split in ("train", "valid", "test"):
        d = tmp_path / "home" / split
        d.mkdir(parents=True)
        (d / "seq.in").write_text("".join(w + "\n" for w, _, _ in rows))
        (d / "seq.out").write_text("".join(t + "\n" for _, t, _ in rows))
        (d / "label").write_text("".join(i + "\n" for _, _, i in rows))
    task = SlotFillingTask(SlotDataConfig(corpus=str(tmp_path / "home"), download=False))
    task.setup()
    torch.manual_seed(0)
    model = task.build_model(SlotModelConfig(hidden_size=4, word_dim=3, dropout=0.5,
                                             intent_pooling="last"))
    return task, model


TASKS = {"base-adding": lambda tmp_path: _adding(), "babi": _babi, "language_model": _lm,
         "slot_filling": _slots}


@pytest.mark.parametrize("name", TASKS)
@pytest.mark.parametrize("training", [True, False], ids=["train-mode", "eval-mode"])
def test_evaluate_runs_in_eval_mode_and_restores_the_mode(name, training, tmp_path):
    task, model = TASKS[name](tmp_path)
    model.train(training)
    seen = []
    step = task.step

    def spy(model_, batch, state=None):
        seen.append(all(not m.training for m in model_.modules()))
        return step(model_, batch, state)

    task.step = spy
    metrics = task.evaluate(model, "dev", batch_size=2)
    assert seen and all(seen)  # every batch in eval mode
    assert all(m.training == training for m in model.modules())
    assert all(math.isfinite(v) for v in metrics.values())
