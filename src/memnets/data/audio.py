r"""The audio front end: reading wav files, resampling, log-mel and MFCC features,
per-utterance normalisation, SpecAugment masks and a feature cache.

* :func:`read_audio` reads a file into a mono float waveform in [-1, 1]
  (``soundfile`` when it is installed: WAV of any sample format, FLAC, OGG;
  otherwise the standard library's ``wave``: PCM WAV of 8, 16, 24 or 32 bits).
  Several channels are mixed down to their mean.  A file that is not audio,
  is empty or cannot be read raises :class:`~memnets.errors.DataError` naming it.
* :func:`resample` changes the sample rate by band-limited (windowed-sinc)
  interpolation, written out below.
* :func:`log_mel` and :func:`mfcc` compute features with ``torch.stft``;
  :func:`normalize` removes each utterance's mean and variance per feature;
  :func:`spec_augment` draws SpecAugment's time and frequency masks.
* :class:`FeatureSpec` names every setting of the features (and is the cache
  key); :class:`FeatureCache` keeps computed features so that the second epoch
  reads them instead of computing them again.

**Resampling.**  From rate :math:`r` to rate :math:`r'`, with
:math:`g = \gcd(r, r')`, :math:`L = r'/g` (up) and :math:`M = r/g` (down), the
output sample :math:`n` sits at input position :math:`\tau_n = n M / L` and is

.. math::
    y_n = \sum_k x_k\, h(k - \tau_n), \qquad
    h(u) = \rho \,\mathrm{sinc}(\rho u)\, w\!\left(\frac{u \rho}{Z}\right), \qquad
    \rho = \beta \min(1, L / M)

with :math:`\mathrm{sinc}(v) = \sin(\pi v) / (\pi v)`, the Hann window
:math:`w(v) = \cos^2(\pi v / 2)` for :math:`|v| \le 1` (0 outside),
:math:`Z = 8` zero crossings of the sinc on each side and the roll-off
:math:`\beta = 0.97`: an ideal low-pass at :math:`\beta` times the lower of
the two Nyquist frequencies (so that downsampling does not alias), truncated
by the window.  The :math:`L` different phases :math:`\tau_n \bmod 1` give
:math:`L` kernels, applied as one strided convolution; the output has
:math:`\lceil T r' / r \rceil` samples, sample 0 at input time 0.  (This is
the polyphase form of the method that ``resampy`` and torchaudio's
``sinc_interp_hann`` use; signals beyond both ends count as zero.)

**Features.**  Frames of ``frame_ms`` every ``hop_ms`` (a Hann window of
``frame_ms``, FFT size the next power of two, the signal zero-padded by half a
window at both ends so that frame :math:`t` is centred at :math:`t \cdot`
hop: :math:`1 + \lfloor T / \mathrm{hop} \rfloor` frames); the power
spectrum :math:`|X_t(f)|^2`; ``n_mels`` triangular filters spaced evenly on
the HTK mel scale :math:`m(f) = 2595 \log_{10}(1 + f / 700)` between
``f_min`` and ``f_max`` (:func:`mel_filterbank`, unnormalised: each peaks at 1);

.. math::
    \mathrm{logmel}_{t,j} = \log\big(\textstyle\sum_f B_{j f} |X_t(f)|^2 + 10^{-6}\big),
    \qquad
    \mathrm{mfcc}_{t,i} = \sqrt{\tfrac{2 - [i = 0]}{J}} \sum_{j=0}^{J-1}
        \mathrm{logmel}_{t,j} \cos\!\Big(\frac{\pi i (j + \frac12)}{J}\Big)

(the orthonormal DCT-II of the log-mel energies, the first ``n_mfcc``
coefficients; no liftering and no energy term, unlike Kaldi's defaults).

This module is a leaf: it imports the standard library, numpy, torch,
optionally ``soundfile``, and :mod:`memnets.errors`.
"""

from __future__ import annotations

import hashlib
import math
import os
import wave
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from memnets.errors import DataError

try:  # a better reader when installed (pip install memnets[speech])
    import soundfile
except ImportError:  # pragma: no cover - depends on the environment
    soundfile = None

BACKENDS = ("auto", "soundfile", "wave")
FEATURES = ("logmel", "mfcc")
LOG_FLOOR = 1e-6  # added to the mel energies before the log
ZERO_CROSSINGS = 8  # of the resampling sinc, on each side
ROLLOFF = 0.97  # the resampling low-pass, as a fraction of the lower Nyquist frequency


# ---------------------------------------------------------------------- reading


def _describe(path: Path) -> str:
    """The first bytes of a file, for a message about what it holds instead of audio."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return "a file that cannot be read"
    if not head:
        return "an empty file (0 bytes)"
    return f"a file starting with {head!r}"


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001 - libsndfile reports every failure its own way
        detail = " ".join(str(e).split())
        raise DataError(f"{path}: expected an audio file (WAV, FLAC, OGG), got "
                        f"{_describe(path)} ({detail})") from None
    return data, int(rate)


def _read_wave(path: Path) -> tuple[np.ndarray, int]:
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise DataError(f"{path}: expected a PCM WAV file, got {_describe(path)} ({e}); "
                        f"other formats (float WAV, FLAC) need the soundfile package") from None
    n = len(raw) // (width * channels)
    raw = raw[: n * width * channels]
    if width == 1:  # unsigned 8-bit, centred at 128
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:  # 24-bit little-endian: sign-extend three bytes into an int32
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        data = v.astype(np.float32) / float(1 << 23)
    elif width == 4:
        data = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2.0**31).astype(np.float32)
    else:  # pragma: no cover - wave refuses other widths itself
        raise DataError(f"{path}: expected 8, 16, 24 or 32-bit PCM, got {8 * width}-bit")
    return data.reshape(-1, channels), rate


def read_audio(path: str | os.PathLike, *, sample_rate: int | None = None,
               backend: str = "auto") -> tuple[Tensor, int]:
    """Read an audio file as a mono float32 waveform.

    Args:
        path: the file.
        sample_rate: resample to this rate (:func:`resample`); ``None`` keeps the file's.
        backend: ``soundfile``, ``wave`` or ``auto`` (soundfile when installed).

    Returns:
        ``(wave, rate)``: ``wave`` of shape ``(T,)`` in [-1, 1] (integer PCM
        divided by :math:`2^{b-1}`), channels mixed down to their mean; ``rate``
        its sample rate (``sample_rate`` when given).

    Raises:
        DataError: the file is missing, is not audio, or holds no samples.
    """
    path = Path(path)
    if backend not in BACKENDS:
        raise ValueError(f"expected backend in {BACKENDS}, got {backend!r}")
    if not path.is_file():
        raise DataError(f"expected an audio file at {path}, found none")
    if backend == "soundfile" and soundfile is None:
        raise DataError("backend 'soundfile': the soundfile package is not installed "
                        "(pip install soundfile)")
    use_sf = soundfile is not None and backend != "wave"
    data, rate = _read_soundfile(path) if use_sf else _read_wave(path)
    if data.shape[0] == 0:
        raise DataError(f"{path}: expected audio samples, got a file with none "
                        f"({data.shape[1]} channel(s), {rate} Hz)")
    if rate <= 0:
        raise DataError(f"{path}: expected a positive sample rate, got {rate}")
    mono = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1, dtype=np.float32)))
    if sample_rate is not None and sample_rate != rate:
        mono = resample(mono, rate, sample_rate)
        rate = sample_rate
    return mono, rate


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(frames, channels, sample_rate)`` from a file's header, without reading the samples."""
    path = Path(path)
    if soundfile is not None:
        try:
            info = soundfile.info(str(path))
        except Exception as e:  # noqa: BLE001
            raise DataError(f"{path}: expected an audio file, got {_describe(path)} "
                            f"({' '.join(str(e).split())})") from None
        return int(info.frames), int(info.channels), int(info.samplerate)
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes(), w.getnchannels(), w.getframerate()
    except (wave.Error, EOFError, OSError) as e:
        raise DataError(f"{path}: expected a PCM WAV file, got {_describe(path)} ({e})") from None


# ---------------------------------------------------------------------- resampling


def resample(wave_: Tensor, orig_rate: int, new_rate: int) -> Tensor:
    r"""Resample a waveform by windowed-sinc interpolation (the module docstring
    gives the formula).

    Shapes: ``(T,)`` or ``(C, T)`` in, ``(..., ceil(T * new_rate / orig_rate))`` out.
    The kernels are computed in float64; the output has the input's dtype.
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"expected positive sample rates, got {orig_rate} and {new_rate}")
    if orig_rate == new_rate:
        return wave_.clone()
    g = math.gcd(int(orig_rate), int(new_rate))
    up, down = new_rate // g, orig_rate // g
    rho = ROLLOFF * min(1.0, up / down)  # cutoff in cycles per input sample, times 2
    half = math.ceil(ZERO_CROSSINGS / rho)  # kernel half-width in input samples
    size = 2 * half + down
    phases = torch.arange(up, dtype=torch.float64) * down / up  # (L,) tau_n mod M
    u = torch.arange(size, dtype=torch.float64)[None, :] - half - phases[:, None]  # (L, K)
    v = u * rho / ZERO_CROSSINGS
    window = torch.where(v.abs() <= 1, torch.cos(math.pi * v / 2) ** 2, torch.zeros_like(v))
    kernels = (rho * torch.sinc(rho * u) * window).to(wave_.dtype)  # (L, K)
    x = wave_.reshape(-1, wave_.shape[-1])  # (C, T)
    T = x.shape[-1]
    out_len = math.ceil(T * up / down)
    blocks = math.ceil(out_len / up)  # input blocks of M samples
    right = max(0, blocks * down + size - half - T)
    xp = torch.nn.functional.pad(x, (half, right))[:, None, :]  # (C, 1, T')
    y = torch.nn.functional.conv1d(xp, kernels[:, None, :], stride=down)  # (C, L, blocks)
    y = y[:, :, :blocks].transpose(1, 2).reshape(x.shape[0], -1)[:, :out_len]  # (C, T_out)
    return y.reshape(*wave_.shape[:-1], out_len)


# ---------------------------------------------------------------------- features


@dataclass(frozen=True)
class FeatureSpec:
    """Every setting of the features: the waveform's rate and how frames become vectors.

    Args:
        sample_rate: the rate every file is resampled to (Hz).
        kind: ``logmel`` or ``mfcc``.
        n_mels: mel filters.
        n_mfcc: cepstral coefficients kept (``mfcc`` only).
        frame_ms: window length in milliseconds.
        hop_ms: frame shift in milliseconds.
        f_min, f_max: the filterbank's range in Hz (``f_max`` ``None``: Nyquist).
        normalize: remove each utterance's mean and variance per feature.
    """

    sample_rate: int = 16000
    kind: str = "logmel"
    n_mels: int = 40
    n_mfcc: int = 13
    frame_ms: float = 25.0
    hop_ms: float = 10.0
    f_min: float = 0.0
    f_max: float | None = None
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.kind not in FEATURES:
            raise ValueError(f"expected kind in {FEATURES}, got {self.kind!r}")
        if self.sample_rate < 1 or self.n_mels < 1 or self.n_mfcc < 1:
            raise ValueError(f"expected sample_rate, n_mels and n_mfcc >= 1, got "
                             f"{self.sample_rate}, {self.n_mels}, {self.n_mfcc}")
        if self.kind == "mfcc" and self.n_mfcc > self.n_mels:
            raise ValueError(f"expected n_mfcc <= n_mels, got {self.n_mfcc} > {self.n_mels}")
        if self.hop_ms <= 0 or self.frame_ms < self.hop_ms:
            raise ValueError(f"expected 0 < hop_ms <= frame_ms, got hop {self.hop_ms}, frame "
                             f"{self.frame_ms}")
        if self.win_length < 2 or self.hop_length < 1:
            raise ValueError(f"expected a frame of at least 2 samples and a hop of 1 at "
                             f"{self.sample_rate} Hz, got {self.win_length} and "
                             f"{self.hop_length}")
        top = self.sample_rate / 2 if self.f_max is None else self.f_max
        if not 0 <= self.f_min < top <= self.sample_rate / 2:
            raise ValueError(f"expected 0 <= f_min < f_max <= {self.sample_rate / 2:g} Hz, got "
                             f"f_min {self.f_min}, f_max {self.f_max}")

    @property
    def win_length(self) -> int:
        """Window length in samples."""
        return int(round(self.frame_ms * self.sample_rate / 1000))

    @property
    def hop_length(self) -> int:
        """Frame shift in samples."""
        return int(round(self.hop_ms * self.sample_rate / 1000))

    @property
    def n_fft(self) -> int:
        """FFT size: the next power of two of the window length."""
        return 1 << (self.win_length - 1).bit_length()

    @property
    def size(self) -> int:
        """Features per frame."""
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    def frames(self, samples: int) -> int:
        """Frames of a waveform of ``samples`` samples: ``1 + samples // hop_length``."""
        return 1 + samples // self.hop_length

    def key(self) -> str:
        """A short string naming these settings (part of the cache key)."""
        return hashlib.sha1(repr(astuple(self)).encode()).hexdigest()[:16]


def hz_to_mel(f):
    """HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    """The inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> Tensor:
    r"""Triangular filters on the HTK mel scale, ``(n_mels, n_fft // 2 + 1)`` float32.

    Filter :math:`j` rises linearly (in Hz) from centre :math:`c_{j-1}` to
    :math:`c_j` and falls to :math:`c_{j+1}`, where :math:`c_0 \dots c_{J+1}`
    are ``n_mels + 2`` points evenly spaced in mel from ``f_min`` to ``f_max``;
    FFT bin :math:`k` sits at :math:`k \cdot r / n_{fft}` Hz.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    bins = np.arange(n_fft // 2 + 1) * sample_rate / n_fft  # (K,) Hz
    centres = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    lo, mid, hi = centres[:-2, None], centres[1:-1, None], centres[2:, None]  # (J, 1)
    rise = (bins[None, :] - lo) / (mid - lo)
    fall = (hi - bins[None, :]) / (hi - mid)
    return torch.from_numpy(np.maximum(0.0, np.minimum(rise, fall))).float()


def dct_matrix(n_mfcc: int, n_mels: int) -> Tensor:
    """The orthonormal DCT-II, ``(n_mfcc, n_mels)``: row ``i`` is coefficient ``i``."""
    i = np.arange(n_mfcc)[:, None]
    j = np.arange(n_mels)[None, :]
    m = np.cos(np.pi * i * (j + 0.5) / n_mels) * np.sqrt(2.0 / n_mels)
    m[0] /= np.sqrt(2.0)
    return torch.from_numpy(m).float()


def log_mel(wave_: Tensor, spec: FeatureSpec) -> Tensor:
    """Log mel energies of a mono waveform: ``(T,)`` -> ``(frames, n_mels)`` float32,
    not normalised (the module docstring gives the steps)."""
    if wave_.dim() != 1 or wave_.numel() == 0:
        raise ValueError(f"expected a non-empty waveform of shape (T,), got "
                         f"{tuple(wave_.shape)}")
    window = torch.hann_window(spec.win_length, periodic=True, dtype=torch.float32)
    x = torch.stft(wave_.float(), spec.n_fft, hop_length=spec.hop_length,
                   win_length=spec.win_length, window=window, center=True,
                   pad_mode="constant", return_complex=True)  # (K, frames)
    power = x.real ** 2 + x.imag ** 2
    bank = mel_filterbank(spec.n_fft, spec.n_mels, spec.sample_rate, spec.f_min, spec.f_max)
    return torch.log(bank @ power + LOG_FLOOR).T.contiguous()  # (frames, n_mels)


def mfcc(logmel: Tensor, n_mfcc: int) -> Tensor:
    """MFCCs from log mel energies: ``(frames, n_mels)`` -> ``(frames, n_mfcc)``."""
    return logmel @ dct_matrix(n_mfcc, logmel.shape[-1]).T


def normalize(features: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-utterance mean and variance normalisation: every feature (column) of
    ``(T, F)`` minus its mean over time, divided by its standard deviation (the
    biased one) plus ``eps``."""
    mean = features.mean(0, keepdim=True)
    std = features.std(0, unbiased=False, keepdim=True)
    return (features - mean) / (std + eps)


def features(wave_: Tensor, spec: FeatureSpec) -> Tensor:
    """The features ``spec`` describes for a waveform already at ``spec.sample_rate``:
    ``(T,)`` -> ``(spec.frames(T), spec.size)``."""
    out = log_mel(wave_, spec)
    if spec.kind == "mfcc":
        out = mfcc(out, spec.n_mfcc)
    return normalize(out) if spec.normalize else out


def spec_augment(features_: Tensor, *, generator: torch.Generator, time_masks: int = 2,
                 time_width: int = 10, max_time_fraction: float = 0.2, freq_masks: int = 2,
                 freq_width: int = 8, value: float = 0.0) -> Tensor:
    r"""SpecAugment's masks (Park et al., "SpecAugment: a simple data augmentation
    method for automatic speech recognition", 2019) on a copy of ``(T, F)`` features.

    Each of ``freq_masks`` masks sets the features :math:`[f_0, f_0 + f)` of every
    frame to ``value``, with :math:`f \sim U\{0, \dots, F'\}`,
    :math:`F' = \min(` ``freq_width`` :math:`, F)` and
    :math:`f_0 \sim U\{0, \dots, F - f\}`; each of ``time_masks`` masks sets the
    frames :math:`[t_0, t_0 + t)` with :math:`t \sim U\{0, \dots, T'\}`,
    :math:`T' = \min(` ``time_width`` :math:`, \lfloor p T \rfloor)`,
    :math:`p` = ``max_time_fraction``.  Departures: no time warping; the value
    is 0, the mean of normalised features (the paper also uses the mean).
    Draws come from ``generator`` only, so a seed fixes them.
    """
    out = features_.clone()
    T, F = out.shape

    def draw(high: int) -> int:  # U{0..high}
        return int(torch.randint(0, high + 1, (1,), generator=generator))

    for _ in range(freq_masks):
        f = draw(min(freq_width, F))
        f0 = draw(F - f)
        out[:, f0:f0 + f] = value
    t_max = min(time_width, int(max_time_fraction * T))
    for _ in range(time_masks):
        t = draw(t_max)
        t0 = draw(T - t)
        out[t0:t0 + t, :] = value
    return out


# ---------------------------------------------------------------------- cache


def file_identity(path: str | os.PathLike) -> str:
    """A file's path, size and modification time, joined: changes when the file does."""
    p = Path(path)
    st = p.stat()
    return f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"


class FeatureCache:
    """Features computed once per (audio, settings) and then read back.

    In memory always; also on disk as one ``.pt`` file per entry when ``folder``
    is given (so that another run with the same settings skips the work).  The
    key names the audio (:func:`file_identity` for a file, the composition for a
    composed utterance) and the :meth:`FeatureSpec.key`.

    Attributes:
        hits, misses: look-ups answered from the cache / computed.
    """

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._memory: dict[str, Tensor] = {}
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._memory)

    def get(self, key: str, compute) -> Tensor:
        """The features under ``key``, calling ``compute()`` only the first time."""
        if key in self._memory:
            self.hits += 1
            return self._memory[key]
        path = None
        if self.folder is not None:
            path = self.folder / (hashlib.sha1(key.encode()).hexdigest() + ".pt")
            if path.is_file():
                try:
                    value = torch.load(path, weights_only=True)
                except Exception:  # noqa: BLE001 - a broken entry is computed again
                    value = None
                if isinstance(value, Tensor):
                    self.hits += 1
                    self._memory[key] = value
                    return value
        self.misses += 1
        value = compute()
        self._memory[key] = value
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save(value, tmp)
            os.replace(tmp, path)
        return value
