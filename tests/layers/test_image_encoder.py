"""ImageEncoder (memnets.layers.image) against a brute-force convolution written as loops in
float64 (batch norm in evaluation, ReLU, row-major cells), the grid arithmetic against the
shapes torch produces, cell boxes that tile the image exactly, the coordinate features by hand,
gradcheck in float64, and the argument checks."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from memnets.errors import ConfigError
from memnets.layers.image import ImageEncoder, random_affine


def randomise_norms(encoder: ImageEncoder, seed: int = 0) -> None:
    """Batch norm statistics and affine parameters away from their identity defaults."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in encoder.norms:
            C = norm.num_features
            norm.running_mean.copy_(torch.randn(C, generator=g, dtype=torch.float64) * 0.3)
            norm.running_var.copy_(torch.rand(C, generator=g, dtype=torch.float64) + 0.5)
            norm.weight.copy_(torch.randn(C, generator=g, dtype=torch.float64))
            norm.bias.copy_(torch.randn(C, generator=g, dtype=torch.float64))


def brute_conv(x, weight, bias, stride, padding):
    """One image (C, H, W) convolved by loops over every output value."""
    C, H, W = x.shape
    O, _, k, _ = weight.shape
    xp = torch.zeros(C, H + 2 * padding, W + 2 * padding, dtype=x.dtype)
    xp[:, padding:padding + H, padding:padding + W] = x
    h = (H + 2 * padding - k) // stride + 1
    w = (W + 2 * padding - k) // stride + 1
    out = torch.zeros(O, h, w, dtype=x.dtype)
    for o, i, j in itertools.product(range(O), range(h), range(w)):
        total = 0.0 if bias is None else float(bias[o])
        for c, a, b in itertools.product(range(C), range(k), range(k)):
            total += float(weight[o, c, a, b]) * float(xp[c, i * stride + a, j * stride + b])
        out[o, i, j] = total
    return out


@torch.no_grad()
def reference(encoder: ImageEncoder, image):
    """The encoder's equations for one image, in evaluation: (S, D) rows i*w + j."""
    x = image
    for k, conv in enumerate(encoder.convs):
        x = brute_conv(x, conv.weight, conv.bias, encoder.stride, encoder.padding)
        if encoder.batch_norm:
            n = encoder.norms[k]
            x = ((x - n.running_mean[:, None, None]) / torch.sqrt(n.running_var[:, None, None]
                                                                  + n.eps)
                 * n.weight[:, None, None] + n.bias[:, None, None])
        x = x.clamp_min(0)
    C, h, w = x.shape
    rows = []
    for i in range(h):
        for j in range(w):
            f = list(x[:, i, j])
            if encoder.coordinates:
                f += [(2 * j + 1) / w - 1, (2 * i + 1) / h - 1]
            rows.append(torch.tensor([float(v) for v in f], dtype=torch.float64))
    return torch.stack(rows)


@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("coordinates", [True, False])
@pytest.mark.parametrize("kernel_size,stride", [(3, 2), (2, 1), (3, 1), (5, 2)])
def test_features_equal_a_brute_force_loop_of_the_convolutions(batch_norm, coordinates,
                                                              kernel_size, stride):
    torch.manual_seed(0)
    encoder = ImageEncoder(2, (3, 2), kernel_size=kernel_size, stride=stride,
                           batch_norm=batch_norm, coordinates=coordinates).double().eval()
    if batch_norm:
        randomise_norms(encoder)
    else:  # non-zero biases, so that they are checked
        with torch.no_grad():
            for conv in encoder.convs:
                conv.bias.uniform_(-0.5, 0.5)
    images = torch.rand(2, 2, 7, 9, dtype=torch.float64)
    out = encoder(images)
    h, w = encoder.grid(7, 9)
    assert out.shape == (2, h * w, encoder.output_size)
    assert encoder.output_size == 2 + (2 if coordinates else 0)
    for n in range(2):
        ref = reference(encoder, images[n])
        assert torch.allclose(out[n], ref, atol=1e-12), (out[n] - ref).abs().max()


@pytest.mark.parametrize("kernel_size,stride,layers", [(3, 2, 4), (3, 1, 2), (4, 2, 3),
                                                       (5, 3, 2), (1, 2, 3)])
def test_grid_is_the_size_torch_produces(kernel_size, stride, layers):
    encoder = ImageEncoder(3, (2,) * layers, kernel_size=kernel_size, stride=stride).eval()
    for H, W in [(75, 75), (64, 64), (24, 112), (1, 1), (5, 17), (2, 3)]:
        out = encoder(torch.rand(1, 3, H, W))
        h, w = encoder.grid(H, W)
        assert out.shape[1] == h * w and h >= 1 and w >= 1, (H, W)
        # torch's own feature map, before flattening
        x = torch.rand(1, 3, H, W)
        for conv in encoder.convs:
            x = conv(x)
        assert tuple(x.shape[2:]) == (h, w), (H, W)
    assert ImageEncoder().grid(75, 75) == (5, 5)
    assert ImageEncoder().grid(64, 64) == (4, 4)


@pytest.mark.parametrize("layers", [3, 4])
@pytest.mark.parametrize("H,W", [(75, 75), (64, 64), (24, 112), (50, 30), (7, 9), (5, 3), (1, 1)])
def test_cell_boxes_tile_the_image_row_major(H, W, layers):
    encoder = ImageEncoder(3, (4,) * layers)
    h, w = encoder.grid(H, W)
    if (H, W, layers) in ((75, 75, 3), (50, 30, 4)):  # uneven splits: 75 / 10, 50 / 4
        assert (75 % w if H == 75 else 50 % h) != 0
    boxes = encoder.cell_boxes(H, W)
    assert boxes.shape == (h * w, 4) and boxes.dtype == torch.long
    cover = torch.zeros(H, W, dtype=torch.long)
    for x0, y0, x1, y1 in boxes.tolist():
        assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
        cover[y0:y1, x0:x1] += 1
    assert cover.eq(1).all()  # every pixel in exactly one cell
    # row-major: cell i*w + j is grid row i (from the top), column j (from the left)
    for i, j in itertools.product(range(h), range(w)):
        x0, y0, x1, y1 = boxes[i * w + j].tolist()
        if j > 0:
            assert boxes[i * w + j - 1, 2] == x0 and boxes[i * w + j - 1, 1] == y0
        if i > 0:
            assert boxes[(i - 1) * w + j, 3] == y0 and boxes[(i - 1) * w + j, 0] == x0
    if (H, W, layers) == (75, 75, 4):  # 15-pixel cells on the 5 x 5 grid
        assert boxes[7].tolist() == [30, 15, 45, 30] and boxes[24].tolist() == [60, 60, 75, 75]


def test_coordinates_are_the_cell_centres_x_first():
    encoder = ImageEncoder(3, (4, 4, 4, 4), coordinates=True).eval()
    out = encoder(torch.rand(2, 3, 75, 75))
    xy = out[:, :, -2:]
    assert torch.equal(xy[0], xy[1])  # the same for every image
    expected = torch.tensor([[x, y] for y in (-0.8, -0.4, 0.0, 0.4, 0.8)
                             for x in (-0.8, -0.4, 0.0, 0.4, 0.8)])
    assert torch.allclose(xy[0], expected, atol=1e-6)
    # and each centre lies at the middle of its cell box, mapped to [-1, 1]
    boxes = encoder.cell_boxes(75, 75).double()
    centre = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 75 - 1,
                          (boxes[:, 1] + boxes[:, 3]) / 75 - 1], 1)
    assert torch.allclose(xy[0].double(), centre, atol=1e-6)
    # the features before the coordinates are those of the encoder without them
    plain = ImageEncoder(3, (4, 4, 4, 4), coordinates=False).eval()
    plain.load_state_dict(encoder.state_dict())
    images = torch.rand(2, 3, 30, 20)
    assert torch.equal(encoder(images)[..., :-2], plain(images))
    # a 1 x 1 grid has its centre at (0, 0)
    assert ImageEncoder(3, (2,), coordinates=True, stride=100)(images)[:, :, -2:].abs().max() == 0


def test_dropout_touches_features_not_coordinates_and_only_in_training():
    torch.manual_seed(0)
    encoder = ImageEncoder(3, (16, 16), coordinates=True, dropout=0.5, batch_norm=False)
    images = torch.rand(2, 3, 12, 12)
    encoder.eval()
    a, b = encoder(images), encoder(images)
    assert torch.equal(a, b)
    encoder.train()
    c = encoder(images)
    assert torch.equal(c[..., -2:], a[..., -2:])
    kept = c[..., :-2] != 0
    assert torch.allclose(c[..., :-2][kept], 2 * a[..., :-2][kept])  # inverted dropout
    live = a[..., :-2] != 0
    assert 0.35 < (c[..., :-2][live] == 0).double().mean() < 0.65  # about half dropped


def test_gradcheck_float64():
    torch.manual_seed(1)
    encoder = ImageEncoder(2, (3, 2), coordinates=True).double().eval()
    randomise_norms(encoder, seed=2)
    images = torch.rand(2, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(encoder, (images,), eps=1e-6, atol=1e-6)
    # training mode: the batch statistics are part of the function
    encoder.train()
    assert torch.autograd.gradcheck(encoder, (images,), eps=1e-6, atol=1e-5)


def test_batch_norm_in_training_normalises_over_the_batch():
    torch.manual_seed(0)
    encoder = ImageEncoder(3, (4,), stride=1, batch_norm=True).train()
    images = torch.rand(5, 3, 6, 6)
    x = encoder.norms[0](encoder.convs[0](images))  # before the ReLU
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(4), atol=1e-5)
    assert encoder.convs[0].bias is None
    assert ImageEncoder(batch_norm=False).convs[0].bias is not None


def test_bad_arguments_and_inputs_are_clear_errors():
    with pytest.raises(ConfigError, match="channels"):
        ImageEncoder(3, ())
    with pytest.raises(ConfigError, match="channels"):
        ImageEncoder(3, 32)
    with pytest.raises(ConfigError, match="channels"):
        ImageEncoder(3, (8, 0))
    with pytest.raises(ConfigError, match="stride"):
        ImageEncoder(stride=0)
    with pytest.raises(ConfigError, match="dropout"):
        ImageEncoder(dropout=1.0)
    encoder = ImageEncoder(3, (4,))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got \(2, 1, 8, 8\)"):
        encoder(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got \(3, 8, 8\)"):
        encoder(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="uint8"):
        encoder(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="height"):
        encoder.grid(0, 5)


# ---------------------------------------------------------------------- random_affine


def test_random_affine_moves_each_image_by_its_drawn_map():
    """A linear ramp is reproduced exactly by bilinear sampling, so every output pixel
    inside the image must equal the ramp at c + R(-theta) (p - c - t) / s, with theta,
    s and t drawn in that order from the generator."""
    H, W = 12, 30
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5,
                            torch.arange(W, dtype=torch.float64) + 0.5, indexing="ij")
    ramp = lambda x, y: 0.3 * x - 0.7 * y + 2.0  # noqa: E731
    images = ramp(xs, ys)[None, None].repeat(3, 2, 1, 1)
    out = random_affine(images, shift=2, rotate=10, scale=0.2,
                        generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    u = [torch.rand(3, generator=g, dtype=torch.float64) for _ in range(4)]
    theta, s = (2 * u[0] - 1) * 10 * math.pi / 180, 1 + (2 * u[1] - 1) * 0.2
    tx, ty = (2 * u[2] - 1) * 2, (2 * u[3] - 1) * 2
    for n in range(3):
        dx, dy = xs - W / 2 - tx[n], ys - H / 2 - ty[n]
        cos, sin = math.cos(theta[n]), math.sin(theta[n])
        x_in = W / 2 + (cos * dx + sin * dy) / s[n]
        y_in = H / 2 + (-sin * dx + cos * dy) / s[n]
        inside = (x_in > 0.5) & (x_in < W - 0.5) & (y_in > 0.5) & (y_in < H - 0.5)
        assert inside.sum() > 200
        for channel in range(2):
            torch.testing.assert_close(out[n, channel][inside], ramp(x_in, y_in)[inside],
                                       atol=1e-5, rtol=0)
    assert not torch.equal(out[0], out[1])  # each image its own map


def test_random_affine_whole_pixel_shift_and_no_op():
    image = torch.zeros(1, 3, 8, 10)
    image[0, :, 3, 4] = 1.0
    assert random_affine(image) is image  # nothing asked: untouched
    g = torch.Generator().manual_seed(0)
    u = [torch.rand(1, generator=g, dtype=torch.float64) for _ in range(4)]
    moved = random_affine(image, shift=2, generator=torch.Generator().manual_seed(0))
    tx, ty = float((2 * u[2] - 1) * 2), float((2 * u[3] - 1) * 2)
    # the mass moves by (tx, ty): its centre of mass follows
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(10.0), indexing="ij")
    w = moved[0, 0]
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-5)
    assert float((w * xs).sum()) == pytest.approx(4 + tx, abs=1e-4)
    assert float((w * ys).sum()) == pytest.approx(3 + ty, abs=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    ({"shift": -1}, "shift >= 0"), ({"scale": 1.0}, "scale in"), ({"rotate": -2}, "rotate"),
])
def test_random_affine_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        random_affine(torch.zeros(1, 3, 4, 4), **kwargs)
    with pytest.raises(ValueError, match="float images"):
        random_affine(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), shift=1)
