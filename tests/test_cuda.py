"""The CUDA paths: every layer, cell and model gives on the GPU what it gives on the CPU.

Skipped where no CUDA device is present (CI has none); run on a GPU machine with
``python -m pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import memnets
from memnets.cells.fused import GRUPointwise, LSTMPointwise
from memnets.layers.sequence import map_state
from memnets.models.memn2n import MemN2N
from memnets.tasks.recipes import load_config
from memnets.train import load_run, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device (none visible to torch)")

CUDA = torch.device("cuda")
LENGTHS = [6, 3, 5, 1]


@pytest.fixture(autouse=True)
def full_float32():
    """cuDNN and cuBLAS may use TF32 (10-bit mantissa) on Ampere and later, which
    moves float32 results by ~1e-4; the comparisons here are of the recurrences."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _flat(state):
    out = []
    map_state(out.append, state)
    return out


def _pair(module):
    """The module and a copy of it on the GPU."""
    return module, copy.deepcopy(module).to(CUDA)


def _backward_both(cpu_out, gpu_out):
    g = torch.randn_like(cpu_out)
    cpu_out.backward(g)
    gpu_out.backward(g.to(CUDA))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "generic"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_dropin_on_cuda_matches_torch_nn_on_cuda(mode, fused, bidirectional):
    torch.manual_seed(0)
    ours = getattr(memnets, mode)(5, 7, num_layers=2, bidirectional=bidirectional,
                                  fused=fused).to(CUDA)
    ref = getattr(torch.nn, mode)(5, 7, num_layers=2, bidirectional=bidirectional).to(CUDA)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(max(LENGTHS), len(LENGTHS), 5, device=CUDA, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    lengths = torch.tensor(LENGTHS)
    out, state = ours(x, lengths=lengths)
    packed = pack_padded_sequence(x_ref, lengths, enforce_sorted=False)
    ref_out, ref_state = ref(packed)
    ref_out, _ = torch.nn.utils.rnn.pad_packed_sequence(ref_out, total_length=max(LENGTHS))
    torch.testing.assert_close(out, ref_out, atol=2e-5, rtol=1e-4)
    for a, b in zip(_flat(state), _flat(ref_state)):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
    g = torch.randn_like(out)
    out.backward(g)
    ref_out.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=2e-5, rtol=1e-4)
    for name, p in ref.named_parameters():  # torch's names, which ours answers to
        torch.testing.assert_close(getattr(ours, name).grad, p.grad, atol=5e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
def test_dropin_weights_are_flattened_for_cudnn(mode):
    torch.manual_seed(0)
    kwargs = {"proj_size": 3} if mode == "LSTM" else {}
    ours = getattr(memnets, mode)(5, 7, num_layers=2, bidirectional=True, **kwargs)
    ref = getattr(torch.nn, mode)(5, 7, num_layers=2, bidirectional=True, **kwargs)
    ref.load_state_dict(ours.state_dict())
    ours, ref = ours.to(CUDA), ref.to(CUDA)
    storages = {p.untyped_storage().data_ptr() for p in ours.parameters()}
    assert len(storages) == 1, "expected every weight in one cuDNN buffer"
    x = torch.randn(4, 3, 5, device=CUDA)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*single contiguous chunk.*")
        out, _ = ours(x)
    torch.testing.assert_close(out, ref(x)[0], atol=2e-5, rtol=1e-4)
    ours.load_state_dict(ref.state_dict())  # loading keeps the layout
    assert len({p.untyped_storage().data_ptr() for p in ours.parameters()}) == 1


def _designs():
    return [("cell", n) for n in memnets.cell_names()] + [
        ("stack", n) for n in memnets.stack_names()]


@pytest.mark.parametrize("kind,name", _designs())
def test_every_design_on_cuda_equals_the_cpu_in_float64(kind, name):
    torch.manual_seed(0)
    if kind == "cell":
        module = memnets.Recurrent(memnets.make_cell(name, input_size=3, hidden_size=4))
    else:
        module = memnets.make_stack(name, input_size=3, hidden_size=4, num_layers=2)
    cpu, gpu = _pair(module.double())
    x = torch.randn(max(LENGTHS), len(LENGTHS), 3, dtype=torch.float64)
    lengths = torch.tensor(LENGTHS)
    out_c, state_c = cpu(x, lengths=lengths)
    out_g, state_g = gpu(x.to(CUDA), lengths=lengths.to(CUDA))
    torch.testing.assert_close(out_g.cpu(), out_c, atol=1e-10, rtol=0)
    for a, b in zip(_flat(state_g), _flat(state_c)):
        torch.testing.assert_close(a.cpu(), b, atol=1e-10, rtol=0)
    _backward_both(out_c, out_g)
    gpu_params = dict(gpu.named_parameters())
    for n, p in cpu.named_parameters():
        torch.testing.assert_close(gpu_params[n].grad.cpu(), p.grad, atol=1e-9, rtol=0)


def test_fused_pointwise_functions_gradcheck_on_cuda():
    torch.manual_seed(0)
    gates = torch.randn(3, 8, dtype=torch.float64, device=CUDA, requires_grad=True)
    c = torch.randn(3, 2, dtype=torch.float64, device=CUDA, requires_grad=True)
    assert torch.autograd.gradcheck(LSTMPointwise.apply, (gates, c))
    u, v, h = (torch.randn(3, n, dtype=torch.float64, device=CUDA, requires_grad=True)
               for n in (6, 6, 2))
    assert torch.autograd.gradcheck(GRUPointwise.apply, (u, v, h))


@pytest.mark.parametrize("encoding", ["pe", "pe_centered"])
def test_memn2n_on_cuda_equals_the_cpu(encoding):
    torch.manual_seed(0)
    cpu, gpu = _pair(MemN2N(11, 6, 3, memory_size=8, encoding=encoding, pe_width=4,
                            empty_memories=True).double())
    story = torch.randint(1, 11, (3, 5, 4))
    story[:, :, 3] = 0
    lengths = torch.tensor([5, 2, 4])
    q = torch.randint(1, 11, (3, 3))
    lc, ac = cpu(story, lengths, q, return_attention=True)
    lg, ag = gpu(story.to(CUDA), lengths.to(CUDA), q.to(CUDA), return_attention=True)
    torch.testing.assert_close(lg.cpu(), lc, atol=1e-10, rtol=0)
    torch.testing.assert_close(ag.cpu(), ac, atol=1e-10, rtol=0)


TINY = ["data.T=12", "data.train_size=400", "data.dev_size=40", "data.test_size=40",
        "data.batch_size=8", "model.hidden_size=8", "trainer.log_every=5",
        "trainer.progress=false", "trainer.tensorboard=false", "trainer.device=cuda"]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_on_cuda_resumes_and_loads_on_the_cpu(tmp_path, precision):
    extra = [] if precision == "fp32" else ["trainer.precision=bf16"]
    config = load_config("adding", TINY + extra + ["trainer.max_steps=20"])
    first = train(config, tmp_path, quiet=True)
    assert first["steps"] == 20 and math.isfinite(first["test"]["mse"])
    more = load_config("adding", TINY + extra + ["trainer.max_steps=40"])
    resumed = train(more, tmp_path, quiet=True, resume=True)
    assert resumed["steps"] == 40
    _, _, model = load_run(tmp_path, which="latest")  # a CUDA run loads where no GPU is
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_joint_tagger_and_its_ensemble_on_cuda_equal_the_cpu(tmp_path):
    """The ATIS model (char CNN, BiLSTM, CRF, attention intent with parts) and an
    ensemble of two runs loaded with ``load_run(device="cuda")`` score and decode on
    the GPU as on the CPU (the averaged CRF lives on the device too)."""
    from test_atis_task import train_home_ensemble

    ens = train_home_ensemble(tmp_path, ["s1", "s2"],
                              ("model.intent_parts='.'", "trainer.device=cuda"))
    runs = ens.parent
    for run in (runs / "s1", ens):
        _, task, cpu = load_run(run)
        _, _, gpu = load_run(run, device="cuda")
        assert all(p.device.type == "cuda" for p in gpu.parameters())
        on_cpu = task.evaluate(cpu, "test", batch_size=16)
        on_gpu = task.evaluate(gpu, "test", batch_size=16)
        assert on_gpu.keys() == on_cpu.keys()
        for key, value in on_cpu.items():
            assert on_gpu[key] == pytest.approx(value, abs=1e-4), key
        batch = task.collate(task.examples("test")[:16])
        out_c = cpu(batch.words, batch.chars, batch.lengths)
        g = batch.to(CUDA)
        out_g = gpu(g.words, g.chars, g.lengths)
        torch.testing.assert_close(out_g.emissions.cpu(), out_c.emissions, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out_g.intent_logits.cpu(), out_c.intent_logits,
                                   atol=1e-5, rtol=1e-5)
        assert gpu.decode(out_g, batch.lengths) == cpu.decode(out_c, batch.lengths)


def test_fp16_training_on_cuda_keeps_its_scaler_in_checkpoints_and_resumes(tmp_path):
    """``trainer.precision: fp16``: float16 autocast with a GradScaler; the scale is
    logged with every train row and saved in every checkpoint, and a resumed run goes
    on from the saved scale."""
    import json

    from memnets.train import checkpoint as ckpt

    sets = TINY + ["trainer.precision=fp16", "trainer.checkpoint_every=10",
                   "trainer.eval_every=20"]
    first = train(load_config("adding", sets + ["trainer.max_steps=20"]), tmp_path, quiet=True)
    assert first["steps"] == 20 and math.isfinite(first["test"]["mse"])
    meta, _ = ckpt.load_checkpoint(ckpt.read_pointer(tmp_path))
    saved = meta["scaler"]
    assert saved["scale"] > 0 and set(saved) >= {"scale", "_growth_tracker"}
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert all(r["loss_scale"] > 0 for r in rows if r["split"] == "train")
    more = train(load_config("adding", sets + ["trainer.max_steps=40"]), tmp_path,
                 resume=True, quiet=True)
    assert more["steps"] == 40 and math.isfinite(more["test"]["mse"])
    final = ckpt.load_checkpoint(ckpt.read_pointer(tmp_path))[0]["scaler"]
    if final["scale"] == saved["scale"]:  # no step skipped since: the count went on
        assert final["_growth_tracker"] == saved["_growth_tracker"] + 20


def test_accumulation_on_cuda_equals_one_large_batch(tmp_path):
    """Two micro-batches of 4 per step give the weights of one batch of 8."""
    from safetensors.torch import load_file

    from memnets.train import checkpoint as ckpt

    sets = TINY + ["trainer.max_steps=12", "trainer.eval_every=12", "optimizer.grad_clip=0.5"]
    train(load_config("adding", sets), tmp_path / "one", quiet=True)
    train(load_config("adding", sets + ["data.batch_size=4", "trainer.accumulate=2"]),
          tmp_path / "acc", quiet=True)
    a = load_file(str(ckpt.read_pointer(tmp_path / "one") / "model.safetensors"))
    b = load_file(str(ckpt.read_pointer(tmp_path / "acc") / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)


def test_compiled_training_on_cuda_checkpoints_plain_keys(tmp_path):
    """``trainer.compile: true`` with torch's default backend (inductor, Triton kernels)."""
    import importlib.util

    from safetensors.torch import load_file

    from memnets.train import checkpoint as ckpt
    from memnets.train.trainer import _compile_problem

    if _compile_problem() is not None or importlib.util.find_spec("triton") is None:
        pytest.skip("torch.compile or Triton is not available here")
    config = load_config("adding", TINY + ["data.T=6", "trainer.max_steps=6",
                                           "trainer.eval_every=6", "trainer.compile=true"])
    results = train(config, tmp_path, quiet=True)
    assert results["steps"] == 6 and math.isfinite(results["test"]["mse"])
    keys = load_file(str(ckpt.read_pointer(tmp_path) / "model.safetensors")).keys()
    assert keys and not any(k.startswith("_orig_mod") for k in keys)
    _, _, model = load_run(tmp_path, which="latest")
    assert set(model.state_dict()) == set(keys)
