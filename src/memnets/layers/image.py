r"""A small convolutional image encoder: an image in, a grid of feature vectors out.

The grid is the memory that visual attention reads (the captioning and the
visual question answering models): one vector per cell, the cells in row-major
order, with each cell's rectangle of the image (:meth:`ImageEncoder.cell_boxes`)
for the attention maps and their localisation; :func:`random_affine`, the
training-time augmentation of a batch of images.

This module imports torch, :mod:`memnets.cells.base` (the size checks) and
:mod:`memnets.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.cells.base import check_size
from memnets.errors import ConfigError


class ImageEncoder(nn.Module):
    r"""A stack of strided convolutions whose last feature map, read cell by cell,
    is a set of :math:`S = h \cdot w` annotation vectors.

    .. math::
        \begin{aligned}
        x^{(0)} &= I, \qquad
        x^{(l)} = \mathrm{ReLU}\big(\mathrm{BN}_l(W_l \ast_s x^{(l-1)} [+ b_l])\big),
            \quad l = 1 \dots L \\
        a_{i w + j} &= \mathrm{drop}\big(x^{(L)}_{:, i, j}\big)\ [;\, x_j;\, y_i],
            \qquad x_j = \tfrac{2j + 1}{w} - 1,\ \ y_i = \tfrac{2i + 1}{h} - 1
        \end{aligned}

    with :math:`\ast_s` a convolution of stride ``stride`` and zero padding
    :math:`\lfloor k / 2 \rfloor`, so each layer maps a side of :math:`n`
    pixels to :math:`\lfloor (n + 2\lfloor k/2 \rfloor - k) / s \rfloor + 1`
    (:meth:`grid`); a 75-pixel side becomes 38, 19, 10, 5 with the defaults.
    This is the image module of Santoro et al., "A simple neural network module
    for relational reasoning", 2017 (four 3x3 convolutions of stride 2 with
    batch norm and ReLU), whose coordinate features — the centre of each cell
    in :math:`[-1, 1]`, x first — ``coordinates`` appends; the vectors play the
    part of the annotation vectors :math:`a_i` of Xu et al., "Show, attend and
    tell: neural image caption generation with visual attention", 2015.

    Args:
        in_channels: C, the image's channels.
        channels: the output channels of each convolution, lowest first (L = its length).
        kernel_size: k, every convolution's (square) kernel.
        stride: s, every convolution's stride.
        batch_norm: batch normalisation after every convolution (then the
            convolutions have no bias :math:`b_l`).
        coordinates: append each cell's centre :math:`(x_j, y_i)`.
        dropout: on the features (not the coordinates), in training.

    Initialisation: convolutions Kaiming-normal for ReLU (He, Zhang, Ren & Sun,
    "Delving deep into rectifiers", 2015), biases zero; batch norm scale 1, shift 0.

    Shapes (N = batch, H, W = image size, h, w = :meth:`grid` ``(H, W)``):
        input ``(N, C, H, W)`` float, values in [0, 1]; output ``(N, h·w, D)``,
        row ``i·w + j`` the cell in grid row ``i`` (from the top), column ``j``
        (from the left); D = :attr:`output_size` = ``channels[-1]`` (+ 2 with
        ``coordinates``).

    Attributes:
        convs: the convolutions, lowest first; ``convs[l].weight`` is
            ``(channels[l], C_in, k, k)``.
        norms: the batch norms (empty without ``batch_norm``).
        output_size: D.

    Departures: Santoro et al.'s coordinates run over the cell indices with the
    end cells at :math:`\pm 1`; here they are the cells' centres, so a cell's
    coordinate is the centre of its rectangle in :meth:`cell_boxes` (up to the
    rounding of uneven splits).  In training, batch norm averages over the
    images of the batch, so a model that shares one image among several
    examples (``image_index``) computes its statistics over distinct images.

    Examples::

        >>> import torch
        >>> from memnets.layers.image import ImageEncoder
        >>> encoder = ImageEncoder(3, (8, 8, 8, 8), coordinates=True).eval()
        >>> encoder.grid(75, 75), encoder.output_size
        ((5, 5), 10)
        >>> features = encoder(torch.rand(2, 3, 75, 75))       # 25 cells, row-major
        >>> features.shape
        torch.Size([2, 25, 10])
        >>> [round(v, 4) for v in features[0, 7, -2:].tolist()]  # row 1, column 2: (x, y)
        [0.0, -0.4]
        >>> encoder.cell_boxes(75, 75)[7].tolist()             # x0, y0, x1, y1 in pixels
        [30, 15, 45, 30]
    """

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (32, 32, 32, 32), *,
                 kernel_size: int = 3, stride: int = 2, batch_norm: bool = True,
                 coordinates: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels = check_size("in_channels", in_channels)
        if isinstance(channels, int) or not channels:
            raise ConfigError(f"channels: expected a non-empty list of channel counts, "
                              f"got {channels!r}")
        self.channels = tuple(check_size("channels", c) for c in channels)
        self.kernel_size = check_size("kernel_size", kernel_size)
        self.stride = check_size("stride", stride)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"expected dropout in [0, 1), got {dropout}")
        self.padding = kernel_size // 2
        self.batch_norm, self.coordinates, self.dropout = batch_norm, coordinates, dropout
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        size = in_channels
        for c in self.channels:
            self.convs.append(nn.Conv2d(size, c, kernel_size, stride=stride,
                                        padding=self.padding, bias=not batch_norm))
            if batch_norm:
                self.norms.append(nn.BatchNorm2d(c))
            size = c
        self.output_size = self.channels[-1] + (2 if coordinates else 0)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        for norm in self.norms:
            norm.reset_parameters()

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)``, the grid of cells of an image of ``height`` x ``width`` pixels."""
        h, w = check_size("height", height), check_size("width", width)
        k, s, p = self.kernel_size, self.stride, self.padding
        for _ in self.convs:
            h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        return h, w

    def cell_boxes(self, height: int, width: int) -> Tensor:
        """``(S, 4)`` long: the pixel box ``(x0, y0, x1, y1)`` (half-open) of each cell,
        row-major: the image split evenly into ``h`` rows and ``w`` columns of
        rectangles (edges at ``floor(i * height / h)``), which tile it exactly."""
        h, w = self.grid(height, width)
        ys = [i * height // h for i in range(h + 1)]
        xs = [j * width // w for j in range(w + 1)]
        return torch.tensor([[xs[j], ys[i], xs[j + 1], ys[i + 1]]
                             for i in range(h) for j in range(w)], dtype=torch.long)

    def centres(self, h: int, w: int, *, device=None, dtype=None) -> Tensor:
        """``(h·w, 2)`` the coordinate features ``(x_j, y_i)`` of a grid, row-major."""
        y = (2 * torch.arange(h, device=device, dtype=dtype) + 1) / h - 1  # (h,)
        x = (2 * torch.arange(w, device=device, dtype=dtype) + 1) / w - 1  # (w,)
        return torch.stack([x.repeat(h), y.repeat_interleave(w)], 1)  # (h*w, 2)

    def forward(self, images: Tensor) -> Tensor:
        if not isinstance(images, Tensor) or images.dim() != 4 or \
                images.shape[1] != self.in_channels:
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"expected images of shape (N, {self.in_channels}, H, W), got {got}")
        if not images.is_floating_point():
            raise ValueError(f"expected float images with values in [0, 1], got {images.dtype} "
                             f"(divide uint8 pixels by 255)")
        x = images
        for k, conv in enumerate(self.convs):
            x = conv(x)
            if self.batch_norm:
                x = self.norms[k](x)
            x = F.relu(x)  # (N, C_l, h_l, w_l)
        N, _, h, w = x.shape
        a = x.flatten(2).transpose(1, 2)  # (N, h*w, C_L), row-major cells
        if self.dropout > 0:
            a = F.dropout(a, self.dropout, self.training)
        if self.coordinates:
            xy = self.centres(h, w, device=a.device, dtype=a.dtype)  # (S, 2)
            a = torch.cat([a, xy.expand(N, -1, -1)], -1)  # (N, S, C_L + 2)
        return a

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, batch_norm={self.batch_norm}, "
                f"coordinates={self.coordinates}")


def random_affine(images: Tensor, *, shift: float = 0.0, rotate: float = 0.0,
                  scale: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
    r"""Each image of a batch moved by its own small random affine map: the
    augmentation of Simard, Steinkraus & Platt, "Best practices for convolutional
    neural networks applied to visual document analysis", 2003 (without the
    elastic part).

    Per image, uniformly: a rotation :math:`\theta \in [-\text{rotate}, \text{rotate}]`
    degrees, a scale :math:`s \in [1 - \text{scale}, 1 + \text{scale}]` and a shift
    :math:`(t_x, t_y) \in [-\text{shift}, \text{shift}]^2` pixels, about the image's
    centre; the output pixel at :math:`p` is the input, bilinearly interpolated,
    at :math:`c + R(\theta)^{-1}(p - c - t) / s` (zero outside the image).  With
    all three 0 the images are returned as they are.

    Args:
        images: ``(N, C, H, W)`` float.
        shift: the largest shift, in pixels (>= 0).
        rotate: the largest rotation, in degrees (>= 0).
        scale: the largest relative change of size, in [0, 1).
        generator: the random source (``None``: torch's global one, which the
            trainer's checkpoints save, so that a resumed run draws the same maps).

    Returns:
        ``(N, C, H, W)`` of the dtype of ``images``.
    """
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"expected float images of shape (N, C, H, W), got {images.dtype} "
                         f"of shape {tuple(images.shape)}")
    if shift < 0 or rotate < 0 or not 0 <= scale < 1:
        raise ValueError(f"expected shift >= 0, rotate >= 0 and scale in [0, 1), got "
                         f"{shift}, {rotate}, {scale}")
    if shift == 0 and rotate == 0 and scale == 0:
        return images
    N, _, H, W = images.shape

    def uniform(bound: float) -> Tensor:  # (N,) in [-bound, bound]
        u = torch.rand(N, generator=generator, dtype=torch.float64)
        return (2 * u - 1) * bound

    theta = uniform(rotate) * (torch.pi / 180)
    s = 1 + uniform(scale)
    tx, ty = uniform(shift), uniform(shift)
    # affine_grid works in normalised coordinates ([-1, 1] across each side, with
    # align_corners=False): a pixel vector (dx, dy) is (2 dx / W, 2 dy / H) there
    cos, sin = torch.cos(theta) / s, torch.sin(theta) / s
    a = torch.zeros(N, 2, 3, dtype=torch.float64)
    # the inverse map, output -> input: x_in = R(-theta) (x_out - t) / s, in pixels
    a[:, 0, 0], a[:, 0, 1] = cos, sin * H / W
    a[:, 1, 0], a[:, 1, 1] = -sin * W / H, cos
    t = torch.stack([2 * tx / W, 2 * ty / H], 1)  # (N, 2) normalised shift
    a[:, :, 2] = -(a[:, :, :2] @ t.unsqueeze(2)).squeeze(2)
    grid = F.affine_grid(a.to(images.dtype).to(images.device), list(images.shape),
                         align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)
