"""The residual blocks: each against its equations computed here, one example and
one step at a time, with the block's own parameters; the variable-length
contract; the causal convolution; gradcheck; build_encoder and the recipe fields."""

from __future__ import annotations

import math
import typing

import pytest
import torch
from torch import nn

from memnets.cells import cell_names, make_cell
from memnets.config import ModelConfig, _merge, dump_config, parse_yaml
from memnets.errors import ConfigError
from memnets.layers import (
    BlockStack,
    ResidualBlock,
    Stacked,
    XLSTMBlock,
    XLSTMBlockState,
    build_encoder,
)
from memnets.layers.blocks import BLOCK_NAMES, RMSNorm, make_block

CELLS = ["gru", "lstm", "elman"]
DTYPE = torch.float64


# --------------------------------------------------------------------------- the equations


def norm_ref(x, mod):
    """LayerNorm or RMSNorm of a vector ``(d,)``."""
    if isinstance(mod, RMSNorm):
        return x / torch.sqrt((x * x).mean() + mod.eps) * mod.weight
    mu = x.mean()
    var = ((x - mu) ** 2).mean()
    return (x - mu) / torch.sqrt(var + mod.eps) * mod.weight + mod.bias


def group_norm_ref(x, mod: nn.GroupNorm):
    groups = []
    for g in x.view(mod.num_groups, -1):
        mu = g.mean()
        groups.append((g - mu) / torch.sqrt(((g - mu) ** 2).mean() + mod.eps))
    return torch.cat(groups) * mod.weight + mod.bias


def linear_ref(x, lin: nn.Linear):
    return lin.weight @ x + lin.bias


def gelu_ref(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def silu_ref(x):
    return x / (1 + torch.exp(-x))


def residual_ref(block: ResidualBlock, x):
    """One sequence ``(T, d)`` through the block, step by step; (outputs, state)."""
    cell, state, ys = block.recurrent.cell, None, []
    for x_t in x:
        h, state = cell(norm_ref(x_t, block.norm)[None], state)  # the cell's own step
        y = x_t + h[0]
        if block.mlp is not None:
            lin1, _, lin2 = block.mlp
            y = y + linear_ref(gelu_ref(linear_ref(norm_ref(y, block.mlp_norm), lin1)), lin2)
        ys.append(y)
    return torch.stack(ys), state


def post_ref(block: XLSTMBlock, x):
    cell, state, ys = block.recurrent.cell, None, []
    m = block.down.in_features
    for x_t in x:
        h, state = cell(norm_ref(x_t, block.norm)[None], state)
        ab = linear_ref(group_norm_ref(h[0], block.group_norm), block.up)
        ys.append(x_t + linear_ref(gelu_ref(ab[:m]) * ab[m:], block.down))
    return torch.stack(ys), state


def pre_ref(block: XLSTMBlock, x):
    cell, state, ys, a_seen = block.recurrent.cell, None, [], []
    E, K = block.conv.in_channels, block.conv.kernel_size[0]
    w, b = block.conv.weight[:, 0], block.conv.bias  # (E, K), (E,)
    for t, x_t in enumerate(x):
        az = linear_ref(norm_ref(x_t, block.norm), block.up)
        a, z = az[:E], az[E:]
        a_seen.append(a)
        conv = b.clone()
        for j in range(K):  # w_j reads step t - K + 1 + j; none before the first step
            s = t - K + 1 + j
            if s >= 0:
                conv = conv + w[:, j] * a_seen[s]
        c = silu_ref(conv)
        h, state = cell(c[None], state)
        g = group_norm_ref(h[0], block.group_norm)
        ys.append(x_t + linear_ref((g + block.skip * c) * silu_ref(z), block.down))
    zeros = [torch.zeros(E, dtype=x.dtype)] * K
    carry = torch.stack((zeros + a_seen)[-(K - 1):]) if K > 1 else x.new_zeros(0, E)
    return torch.stack(ys), XLSTMBlockState(state, carry[None])


def perturb(block: nn.Module) -> nn.Module:
    """Move every parameter off its initial value (norm gains 1, biases 0 hide terms)."""
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return block


def check_against(block, ref, *, N=3, L=6, lengths=(6, 2, 4)):
    torch.manual_seed(1)
    x = torch.randn(L, N, block.input_size, dtype=DTYPE)  # padding is noise, not zeros
    y, state = block(x, lengths=lengths)
    for n, T in enumerate(lengths):
        want, want_state = ref(block, x[:T, n])
        torch.testing.assert_close(y[:T, n], want, rtol=1e-10, atol=1e-10)
        assert bool((y[T:, n] == 0).all())
        got = [s[n:n + 1] for s in _leaves(state)]
        for g, w in zip(got, _leaves(want_state), strict=True):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


def _leaves(state):
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for s in state for t in _leaves(s)]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(("norm", "mlp_ratio"), [("layer", 2.0), ("rms", 1.5), ("layer", 0)])
def test_residual_block_is_its_equations(cell, norm, mlp_ratio):
    torch.manual_seed(0)
    block = ResidualBlock(make_cell(cell, input_size=4, hidden_size=4), norm=norm,
                          mlp_ratio=mlp_ratio)
    assert (block.mlp is None) == (mlp_ratio == 0)
    check_against(perturb(block.double()), residual_ref)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(("num_heads", "conv_kernel", "norm"), [(1, 4, "layer"), (2, 3, "rms"),
                                                                 (3, 1, "layer")])
def test_pre_up_projection_block_is_its_equations(cell, num_heads, conv_kernel, norm):
    torch.manual_seed(0)
    block = make_block("xlstm_pre", cell, 3, num_heads=num_heads, conv_kernel=conv_kernel,
                       norm=norm)
    assert block.recurrent.cell.input_size == 6  # proj_factor 2
    assert block.group_norm.num_groups == num_heads
    check_against(perturb(block.double()), pre_ref)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(("num_heads", "proj_factor"), [(None, None), (2, 2.0)])
def test_post_up_projection_block_is_its_equations(cell, num_heads, proj_factor):
    torch.manual_seed(0)
    options = {k: v for k, v in (("num_heads", num_heads), ("proj_factor", proj_factor)) if v}
    block = make_block("xlstm_post", cell, 6, **options)
    assert block.down.in_features == (8 if proj_factor is None else 12)  # 4/3 * 6
    assert block.group_norm.num_groups == (num_heads or 1)
    check_against(perturb(block.double()), post_ref)


# --------------------------------------------------------------------------- lengths


BLOCK_CASES = [("residual", {}), ("xlstm_pre", {"num_heads": 2}), ("xlstm_post", {})]


def _encoder(block, cell, options, *, input_size=3, d=4, num_layers=2):
    torch.manual_seed(0)
    return perturb(build_encoder(cell, input_size, d, num_layers=num_layers, block=block,
                                 block_options=options).double())


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(("block", "options"), BLOCK_CASES)
def test_each_sequence_is_itself_alone_and_padding_is_zero(block, options, cell):
    enc = _encoder(block, cell, options)
    lengths = [5, 1, 3]
    x = torch.randn(3, 5, 3, dtype=DTYPE)  # batch_first; noise at the padded steps
    y, state = enc(x, lengths=lengths)
    for n, T in enumerate(lengths):
        alone, alone_state = enc(x[n:n + 1, :T])
        torch.testing.assert_close(y[n:n + 1, :T], alone, rtol=1e-12, atol=1e-12)
        assert bool((y[n, T:] == 0).all())
        for got, want in zip(_leaves(state), _leaves(alone_state), strict=True):
            torch.testing.assert_close(got[n:n + 1], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("block", "options"), BLOCK_CASES)
def test_outputs_never_look_ahead(block, options):
    """Changing the input from step t+1 on leaves every output up to t as it was: the
    causal convolution (and everything else) reads only the past."""
    enc = _encoder(block, "gru", options)
    x = torch.randn(2, 7, 3, dtype=DTYPE)
    y, _ = enc(x)
    for t in range(6):
        x2 = x.clone()
        x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:])
        y2, _ = enc(x2)
        torch.testing.assert_close(y2[:, :t + 1], y[:, :t + 1], rtol=0, atol=0)
        assert not torch.allclose(y2[:, t + 1:], y[:, t + 1:])


@pytest.mark.parametrize(("block", "options"), BLOCK_CASES)
def test_a_sequence_in_two_pieces_continues_from_the_final_state(block, options):
    enc = _encoder(block, "lstm", options)
    x = torch.randn(2, 7, 3, dtype=DTYPE)
    whole, final = enc(x)
    first, state = enc(x[:, :3])
    second, final2 = enc(x[:, 3:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=1e-12, atol=1e-12)
    for got, want in zip(_leaves(final2), _leaves(final), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    if block == "xlstm_pre":
        assert all(isinstance(s, XLSTMBlockState) for s in final)


def test_pre_block_refuses_a_conv_state_of_the_wrong_shape():
    block = make_block("xlstm_pre", "gru", 2)
    x = torch.randn(5, 3, 2)
    _, state = block(x)
    assert tuple(state.conv.shape) == (3, 3, 4)  # (N, K - 1, E)
    with pytest.raises(ValueError, match=r"state field 'conv' of shape \(3, 3, 4\)"):
        block(x, XLSTMBlockState(state.cell, state.conv[:, :2]))


def _one_layer_cells():
    return [name for name in cell_names()
            if make_cell(name, input_size=4, hidden_size=4).output_size == 4]


@pytest.mark.parametrize("cell", _one_layer_cells())
@pytest.mark.parametrize(("block", "options"), BLOCK_CASES)
def test_every_registered_cell_of_its_own_width_runs_in_every_block(block, options, cell):
    """Every registered one-layer cell whose output is its width (new cells are picked
    up here): the lengths contract holds (float32, a tolerance for parallel forms)."""
    torch.manual_seed(0)
    enc = build_encoder(cell, 3, 4, num_layers=2, block=block, block_options=options)
    x = torch.randn(2, 5, 3)
    y, _ = enc(x, lengths=[5, 2])
    alone, _ = enc(x[1:, :2])
    torch.testing.assert_close(y[1:, :2], alone, rtol=1e-5, atol=1e-6)
    assert bool((y[1, 2:] == 0).all())
    assert len(enc.cells()) == 2


# --------------------------------------------------------------------------- gradcheck


@pytest.mark.parametrize(("block", "cell", "options"), [
    ("residual", "gru", {"mlp_ratio": 1.0, "norm": "rms"}),
    ("xlstm_pre", "elman", {"conv_kernel": 2, "num_heads": 2}),
    ("xlstm_post", "lstm", {}),
])
def test_gradcheck_float64(block, cell, options):
    torch.manual_seed(0)
    b = perturb(make_block(block, cell, 2, **options).double())
    names, params = zip(*b.named_parameters())
    x = torch.randn(3, 2, 2, dtype=DTYPE, requires_grad=True)

    def f(x, *ps):
        return torch.func.functional_call(b, dict(zip(names, ps)), (x,),
                                          {"lengths": [3, 2]})[0]

    inputs = (x, *[p.detach().requires_grad_() for p in params])
    assert torch.autograd.gradcheck(f, inputs, fast_mode=True)


# --------------------------------------------------------------------------- build_encoder


@pytest.mark.parametrize("block", BLOCK_NAMES)
def test_build_encoder_with_a_block(block):
    options = {"num_heads": 2} if block != "residual" else {"mlp_ratio": 2}
    enc = build_encoder("gru", 3, 4, num_layers=3, block=block, block_options=options,
                        dropout=0.25)
    assert type(enc) is BlockStack and enc.batch_first
    assert (enc.input_size, enc.output_size) == (3, 4)
    assert len(enc.blocks) == 3 and len(enc.cells()) == 3
    assert all(blk.drop.p == 0.25 for blk in enc.blocks)
    assert isinstance(enc.final_norm, nn.LayerNorm)
    names = dict(enc.named_parameters())
    assert "input_projection.weight" in names and "blocks.2.recurrent.cell.weight_hh" in names
    y, state = enc(torch.randn(2, 5, 3))
    assert y.shape == (2, 5, 4) and len(state) == 3


def test_build_encoder_without_projection_or_final_norm():
    enc = build_encoder("lstm", 4, 4, block="residual",
                        block_options={"final_norm": False, "norm": "rms"})
    assert enc.input_projection is None and enc.final_norm is None
    enc = build_encoder("lstm", 4, 4, block="residual", block_options={"norm": "rms"})
    assert isinstance(enc.final_norm, RMSNorm)


def test_build_encoder_without_a_block_is_unchanged():
    assert type(build_encoder("lstm", 3, 4, torch_compatible=False)) is Stacked
    with pytest.raises(ConfigError, match="block_options: expected none without a block"):
        build_encoder("lstm", 3, 4, block_options={"norm": "rms"})


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"block": "transformer"}, "block: expected one of 'residual', 'xlstm_pre', 'xlstm_post'"),
    ({"block": "residual", "bidirectional": True}, "expected bidirectional false"),
    ({"block": "residual", "top_options": {"output_size": 3}}, "expected no top_options"),
    ({"block": "residual", "block_options": {"num_heads": 2}}, "unknown option.*num_heads"),
    ({"block": "xlstm_post", "block_options": {"dropout": 0.1}}, "model's dropout"),
    ({"block": "residual", "block_options": {"norm": "batch"}}, "norm: expected one of"),
    ({"block": "residual", "block_options": {"mlp_ratio": -1}}, "mlp_ratio: expected"),
    ({"block": "residual", "block_options": {"final_norm": "yes"}}, "final_norm"),
    ({"block": "xlstm_post", "block_options": {"num_heads": 3}}, "num_heads: expected a divisor"),
    ({"block": "xlstm_post", "block_options": {"conv_kernel": 4}}, "unknown option.*conv_k"),
    ({"block": "xlstm_pre", "block_options": {"conv_kernel": 0}}, "conv_kernel >= 1"),
    ({"block": "xlstm_pre", "block_options": {"proj_factor": 0}}, "proj_factor: expected"),
    ({"block": "residual", "cell_options": {"proj_size": 2}}, "output_size equals its input"),
    ({"block": "residual", "num_layers": 0}, "num_layers >= 1"),
    ({"block": "residual", "dropout": 1.0}, r"dropout: expected a number in \[0, 1\)"),
])
def test_bad_block_arguments_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_encoder("lstm", 3, 4, **kwargs)


def test_xlstm_block_arguments_are_checked():
    gru = make_cell("gru", input_size=4, hidden_size=4)
    with pytest.raises(ConfigError, match="no convolution"):
        XLSTMBlock(gru, up_projection="post", conv_kernel=4)
    with pytest.raises(ConfigError, match="expected the block's width size="):
        XLSTMBlock(gru, up_projection="pre")
    with pytest.raises(ConfigError, match=r"round\(2.0 \* 3\) = 6, got 4"):
        XLSTMBlock(gru, up_projection="pre", size=3, proj_factor=2.0)
    with pytest.raises(ConfigError, match="up_projection: expected 'pre' or 'post'"):
        XLSTMBlock(gru, up_projection="mid")
    assert XLSTMBlock(gru, up_projection="pre", size=2).down.out_features == 2


def test_models_take_the_block_through():
    from memnets.models.classifier import SequenceClassifier
    from memnets.models.language_model import RNNLanguageModel

    lm = RNNLanguageModel(11, 4, 4, 2, cell="gru", block="xlstm_pre", init_range=0.1,
                          block_options={"num_heads": 2}, variational=True, dropout=0.1)
    assert type(lm.rnn) is BlockStack
    tokens = torch.randint(0, 11, (2, 5))
    _, state = lm(tokens)
    logits, _ = lm(tokens, lm.detach_state(state))
    assert logits.shape == (2, 5, 11)
    clf = SequenceClassifier(11, 3, 4, 2, cell="elman", block="residual", pooling="mean")
    assert type(clf.encoder) is BlockStack
    assert clf(tokens, torch.tensor([5, 2])).shape == (2, 2)


def test_task_models_take_the_block_from_their_config():
    from memnets.models.babi_lstm import BabiLSTM
    from memnets.models.tagger import SlotTagger
    from memnets.tasks.slot_filling import SlotModelConfig

    babi = BabiLSTM(9, 3, 4, cell="gru", block="xlstm_post", block_options={"num_heads": 2})
    assert type(babi.rnn) is BlockStack
    cfg = SlotModelConfig(hidden_size=4, word_dim=3, block="residual", num_layers=2)
    tagger = SlotTagger(cfg, num_words=6, num_chars=1, tags=["O", "B-a", "I-a"])
    assert type(tagger.encoder) is BlockStack and len(tagger.encoder.blocks) == 2
    posterior = SlotModelConfig(hidden_size=4, word_dim=3, block="residual",
                                cell="jordan", cell_output="posterior")
    with pytest.raises(ConfigError, match="expected no top_options"):
        SlotTagger(posterior, num_words=6, num_chars=1, tags=["O", "B-a", "I-a"])


# --------------------------------------------------------------------------- recipes


def test_model_config_knows_the_block_names():
    hint = typing.get_type_hints(ModelConfig)["block"]
    literal = next(a for a in typing.get_args(hint) if typing.get_origin(a) is typing.Literal)
    assert typing.get_args(literal) == BLOCK_NAMES
    assert ModelConfig().block is None and ModelConfig().block_options == {}


RECIPE = {"task": "adding", "data": {"T": 6, "batch_size": 2},
          "model": {"cell": "gru", "hidden_size": 4, "num_layers": 2, "block": "xlstm_pre",
                    "block_options": {"num_heads": 2, "norm": "rms", "final_norm": False}}}


def test_a_recipe_with_a_block_loads_builds_and_round_trips():
    from memnets.models.regressor import SequenceRegressor
    from memnets.tasks.recipes import from_dict

    config = from_dict(RECIPE)
    assert config.model.block == "xlstm_pre"
    assert config.model.block_options == RECIPE["model"]["block_options"]
    again = from_dict(parse_yaml(dump_config(config), "dump"))
    assert again == config
    model = SequenceRegressor(2, 1, config.model, every_step=False)
    assert type(model.encoder) is BlockStack and len(model.encoder.blocks) == 2
    assert isinstance(model.encoder.blocks[0].norm, RMSNorm)
    assert model(torch.randn(3, 6, 2)).shape == (3, 1)


@pytest.mark.parametrize(("model", "match"), [
    ({"block": "lstm"}, "model.block: expected one of 'residual', 'xlstm_pre', 'xlstm_post'"),
    ({"block": 3}, "model.block: expected"),
    ({"block_options": {"norm": "rms"}}, "model.block_options: expected none without"),
    ({"block": "residual", "block_options": {"conv_kernel": 4}}, "unknown option.*conv_kernel"),
    ({"block": "residual", "block_options": [1]}, "model.block_options: expected a mapping"),
])
def test_bad_recipe_blocks_are_config_errors(model, match):
    from memnets.tasks.recipes import from_dict

    with pytest.raises(ConfigError, match=match):
        from_dict({"task": "adding", "model": model})


def test_bidirectional_recipe_with_a_block_is_refused_when_read():
    from memnets.tasks.recipes import from_dict

    with pytest.raises(ConfigError, match="model.block: expected bidirectional: false"):
        from_dict({"task": "sentiment",
                   "model": {"block": "residual", "bidirectional": True}})


def test_extends_replaces_block_options_whole():
    merged = _merge({"model": {"block_options": {"num_heads": 2}, "hidden_size": 4}},
                    {"model": {"block_options": {"norm": "rms"}}})
    assert merged["model"] == {"block_options": {"norm": "rms"}, "hidden_size": 4}
