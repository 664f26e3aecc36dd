"""Export of every registered cell and of the drop-ins, against eager mode.

The TorchScript-based ONNX exporter (``torch.onnx.export(..., dynamo=False)``)
run with onnxruntime: every registered cell through ``memnets.Recurrent``
(both modes where a cell has two) at the traced length, with and without
``lengths``; the drop-ins at the traced length and at other lengths and batch
sizes (dynamic axes); the paths whose graph holds the traced length only warn
when traced and fail at run time at another length.  ``torch.jit.trace`` (saved
and loaded) and ``torch.export`` likewise.  docs/export.md states the results.
"""

import io
import warnings

import pytest
import torch

import memnets

try:
    import onnx  # noqa: F401  (the exporter needs it)
    import onnxruntime
except ImportError:
    onnxruntime = None
# every trace notes its fixed sizes (the one test of our own notes records them), and
# torch 2.13 marks torch.jit.trace/save/load deprecated
pytestmark = [pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
              pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")]
needs_ort = pytest.mark.skipif(
    onnxruntime is None,
    reason="onnx and onnxruntime are not installed (pip install -e '.[export]')")

H_IN, H = 3, 4
L, N = 5, 2
ATOL = 1e-5


def _configs():
    """(id, name, options): every registered cell, in each of its modes."""
    for name in memnets.cell_names(layers=None):
        extra = {"num_layers": 2} if name in memnets.cell_names(layers=True) else {}
        if name in ("mingru", "minlstm"):
            yield f"{name}-parallel", name, {"mode": "parallel", **extra}
            yield f"{name}-parallel-linear", name, {"mode": "parallel", "log_space": False}
            yield f"{name}-step", name, {"mode": "step"}
        elif name == "mlstm":
            yield f"{name}-parallel", name, {"mode": "parallel"}
            yield f"{name}-parallel-chunked", name, {"mode": "parallel", "chunk_size": 2}
            yield f"{name}-step", name, {"mode": "step"}
        else:
            yield name, name, extra


CONFIGS = list(_configs())
# the paths whose exported graph holds every length (the others: the traced one)
ANY_LENGTH = {"mlstm-parallel", "mlstm-parallel-chunked"}


def _flat(out):
    """Outputs and (nested) states as one tuple of tensors."""
    if isinstance(out, torch.Tensor):
        return (out,)
    return tuple(t for part in out for t in _flat(part))


class _Flat(torch.nn.Module):
    """``layer(x[, lengths=])`` with its nested state flattened, for the exporters."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x, lengths=None):
        return _flat(self.layer(x) if lengths is None else self.layer(x, lengths=lengths))


def _recurrent(name, options, seed=0):
    torch.manual_seed(seed)
    cell = memnets.make_cell(name, input_size=H_IN, hidden_size=H, **options)
    return _Flat(memnets.Recurrent(cell)).eval()


def _export(model, args, names, dynamic_axes=None):
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on fixed sizes and checks
        torch.onnx.export(model, args, f, dynamo=False, input_names=names,
                          dynamic_axes=dynamic_axes)
    return onnxruntime.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])


def _assert_runs_as_eager(session, model, args):
    with torch.no_grad():
        expected = _flat(model(*args))
    feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), args)}
    got = session.run(None, feeds)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        torch.testing.assert_close(torch.from_numpy(g), e, atol=ATOL, rtol=0)


@needs_ort
@pytest.mark.parametrize("config,name,options", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_every_cell_exports_to_onnx_at_the_traced_length(config, name, options):
    model = _recurrent(name, options)
    x = torch.randn(L, N, H_IN)
    session = _export(model, (x,), ["x"], {"x": {1: "N"}})
    _assert_runs_as_eager(session, model, (x,))
    _assert_runs_as_eager(session, model, (torch.randn(L, 3, H_IN),))  # another batch size


@needs_ort
@pytest.mark.parametrize("config,name,options", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_every_cell_exports_with_lengths(config, name, options):
    """Traced with lengths whose maximum is L; run with others, also shorter
    than L everywhere (every step runs in the graph, the padded ones masked).
    LSTMN's tape has a slot per step run: L + 1 in the graph, 1 + max(lengths)
    in eager mode, so its lengths here reach L."""
    model = _recurrent(name, options)
    x = torch.randn(L, N, H_IN)
    session = _export(model, (x, torch.tensor([L, 3])), ["x", "lengths"])
    others = ([3, L], [1, L]) if name == "lstmn" else ([2, 4], [1, 1])
    for lengths in ([L, 3],) + others:
        _assert_runs_as_eager(session, model, (x, torch.tensor(lengths)))


@needs_ort
@pytest.mark.parametrize("config,name,options", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_another_length_runs_or_fails_loudly(config, name, options):
    """At a length other than the traced one the graph either holds (the
    parallel mLSTM) or onnxruntime refuses to run it; it never returns numbers
    of the traced length."""
    model = _recurrent(name, options)
    session = _export(model, (torch.randn(L, N, H_IN),), ["x"], {"x": {0: "L"}})
    for other in (L + 3, L - 2):
        x = torch.randn(other, N, H_IN)
        if config in ANY_LENGTH:
            _assert_runs_as_eager(session, model, (x,))
        else:
            with pytest.raises(Exception, match="Split|Reshape"):
                session.run(None, {"x": x.numpy()})


@pytest.mark.parametrize("config,name,options", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_fixed_length_paths_warn_when_traced(config, name, options):
    model = _recurrent(name, options)
    x = torch.randn(L, N, H_IN)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.jit.trace(model, (x,), check_trace=False)
    ours = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)
            and "docs/export.md" in str(w.message)]
    if config in ANY_LENGTH:
        assert not ours
    else:
        assert ours and f"{L} steps" in str(ours[0].message)


@needs_ort
def test_log_space_heinsen_scan_has_no_onnx_form():
    model = _recurrent("mingru", {"mode": "parallel", "scan_method": "heinsen"})
    with pytest.raises(Exception, match="logcumsumexp"):
        _export(model, (torch.randn(L, N, H_IN),), ["x"])


@needs_ort
def test_the_generic_lstm_step_exports_its_outputs_in_order():
    """The LSTM step once returned (c, h) from the exporter: its fused autograd
    function is replaced by the plain formulas while the graph is recorded."""
    model = _recurrent("lstm", {})
    x = torch.randn(L, N, H_IN)
    _assert_runs_as_eager(_export(model, (x,), ["x"]), model, (x,))


DROP_INS = {"rnn": memnets.RNN, "gru": memnets.GRU, "lstm": memnets.LSTM}


def _drop_in_cases():
    for mode in DROP_INS:
        for bi, layers, bf in ((False, 1, False), (True, 2, False), (False, 2, True),
                               (True, 1, True)):
            yield mode, bi, layers, bf, 0


def _drop_in(mode, bi, layers, bf, proj, fused=True):
    torch.manual_seed(0)
    kw = {"num_layers": layers, "bidirectional": bi, "batch_first": bf}
    if proj:
        kw["proj_size"] = proj
    return DROP_INS[mode](H_IN, H, fused=fused, **kw).eval()


def _x(length, batch, bf):
    return torch.randn((batch, length, H_IN) if bf else (length, batch, H_IN))


@needs_ort
@pytest.mark.parametrize("mode,bi,layers,bf,proj", list(_drop_in_cases()))
def test_drop_ins_export_directly_at_any_length_and_batch(mode, bi, layers, bf, proj):
    """``torch.onnx.export(layer, (x,))`` as for torch.nn; torch's fused kernel
    exports as ONNX's RNN/GRU/LSTM operator, which takes any length."""
    model = _drop_in(mode, bi, layers, bf, proj)
    t, n = (1, 0) if bf else (0, 1)
    session = _export(model, (_x(L, N, bf),), ["x"], {"x": {t: "L", n: "N"}})
    for length, batch in ((L, N), (L + 4, 3), (2, 1)):
        _assert_runs_as_eager(session, model, (_x(length, batch, bf),))


@needs_ort
@pytest.mark.parametrize("mode,bi,layers,bf,proj", list(_drop_in_cases()))
def test_drop_ins_export_lengths_and_initial_state(mode, bi, layers, bf, proj):
    """``lengths`` (third positional argument) and ``hx`` as graph inputs."""
    model = _drop_in(mode, bi, layers, bf, proj)
    D = 2 if bi else 1

    def hx(batch):
        h = torch.randn(D * layers, batch, proj or H)
        return (h, torch.randn(D * layers, batch, H)) if mode == "lstm" else h

    t, n = (1, 0) if bf else (0, 1)
    names = ["x", "h_0", "c_0", "lengths"] if mode == "lstm" else ["x", "h_0", "lengths"]
    axes = {"x": {t: "L", n: "N"}, "h_0": {1: "N"}, "c_0": {1: "N"}, "lengths": {0: "N"}}
    session = _export(model, (_x(L, N, bf), hx(N), torch.tensor([L, 3])), names,
                      {k: v for k, v in axes.items() if k in names})
    for length, lengths in ((L, [L, 2]), (L + 3, [4, L + 3, 1])):
        batch = len(lengths)
        x, h = _x(length, batch, bf), hx(batch)
        with torch.no_grad():
            out, state = model(x, h, torch.tensor(lengths))
        feeds = [x] + list(_flat(h)) + [torch.tensor(lengths)]
        got = session.run(None, {i.name: a.numpy() for i, a in zip(session.get_inputs(), feeds)})
        for g, e in zip(got, _flat((out, state))):
            torch.testing.assert_close(torch.from_numpy(g), e, atol=ATOL, rtol=0)


@needs_ort
@pytest.mark.parametrize("mode,fused,proj", [("rnn", False, 0), ("gru", False, 0),
                                             ("lstm", False, 0), ("lstm", True, 2)])
def test_generic_drop_ins_export_at_the_traced_length(mode, fused, proj):
    """``fused=False`` (or a cell of another kind) runs the generic loop: right at
    the traced length, and onnxruntime refuses another one.  So does an LSTM with
    ``proj_size``: ONNX's LSTM operator has no projection."""
    model = _drop_in(mode, True, 2, False, proj, fused=fused)
    session = _export(model, (_x(L, N, False),), ["x"], {"x": {0: "L", 1: "N"}})
    _assert_runs_as_eager(session, model, (_x(L, 3, False),))
    with pytest.raises(Exception, match="Split"):
        session.run(None, {"x": _x(L + 1, N, False).numpy()})


@needs_ort
def test_drop_in_with_a_registered_cell_exports():
    torch.manual_seed(0)
    model = memnets.LSTM(H_IN, H, num_layers=2, cell="scrn").eval()
    x = _x(L, N, False)
    _assert_runs_as_eager(_export(model, (x,), ["x"]), model, (x,))


@pytest.mark.parametrize("config,name,options", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_jit_trace_saves_and_loads_every_cell(config, name, options):
    """The traced graph holds no Python autograd function, so torch.jit.save takes it."""
    model = _recurrent(name, options)
    x = torch.randn(L, N, H_IN)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (x,), check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    with torch.no_grad():
        for e, g in zip(model(x), loaded(x)):
            torch.testing.assert_close(g, e, atol=ATOL, rtol=0)


@pytest.mark.parametrize("mode", list(DROP_INS))
def test_jit_trace_of_a_fused_drop_in_takes_any_length(mode):
    model = _Flat(_drop_in(mode, True, 2, False, 0)).eval()
    traced = torch.jit.trace(model, (_x(L, N, False),), check_trace=False)
    x = _x(L + 4, 3, False)
    with torch.no_grad():
        for e, g in zip(model(x), traced(x)):
            torch.testing.assert_close(g, e, atol=ATOL, rtol=0)


@pytest.mark.parametrize("layer", ["lstm-drop-in", "lstm", "mingru-parallel"])
def test_torch_export_at_the_traced_length(layer):
    if layer == "lstm-drop-in":
        model = _Flat(_drop_in("lstm", True, 2, False, 0)).eval()
    else:
        name, _, mode = layer.partition("-")
        model = _recurrent(name, {"mode": mode} if mode else {})
    x = torch.randn(L, N, H_IN)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        for e, g in zip(model(x), program.module()(x)):
            torch.testing.assert_close(g, e, atol=ATOL, rtol=0)


def test_torch_export_of_the_parallel_mlstm_takes_any_length():
    model = _recurrent("mlstm", {"mode": "parallel", "chunk_size": 2})
    steps = torch.export.Dim("L", min=2, max=64)
    program = torch.export.export(model, (torch.randn(L, N, H_IN),),
                                  dynamic_shapes={"x": {0: steps}})
    x = torch.randn(L + 6, N, H_IN)
    with torch.no_grad():
        for e, g in zip(model(x), program.module()(x)):
            torch.testing.assert_close(g, e, atol=ATOL, rtol=0)
