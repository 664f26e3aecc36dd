"""The audio front end against independent references: WAV bytes written by hand,
the resampling formula summed sample by sample in float64, the mel filters and
the DCT from their definitions in plain Python, log-mel frames cut with numpy."""

from __future__ import annotations

import math
import struct
import wave

import numpy as np
import pytest
import torch

from memnets.data import audio
from memnets.data.audio import (
    FeatureCache,
    FeatureSpec,
    dct_matrix,
    features,
    hz_to_mel,
    log_mel,
    mel_filterbank,
    mfcc,
    normalize,
    read_audio,
    resample,
    spec_augment,
)
from memnets.errors import DataError

BACKENDS = ["wave"] + (["soundfile"] if audio.soundfile is not None else [])


def write_wav(path, frames: bytes, *, channels=1, width=2, rate=8000):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


# ---------------------------------------------------------------------- reading


@pytest.mark.parametrize("backend", BACKENDS)
def test_16_bit_mono_reads_the_integers_over_32768(tmp_path, backend):
    ints = [0, 1, -1, 32767, -32768, 1000, -12345]
    f = write_wav(tmp_path / "a.wav", struct.pack(f"<{len(ints)}h", *ints), rate=16000)
    x, rate = read_audio(f, backend=backend)
    assert rate == 16000 and x.dtype == torch.float32
    assert x.tolist() == [v / 32768 for v in ints]


@pytest.mark.parametrize("backend", BACKENDS)
def test_24_bit_samples_are_sign_extended(tmp_path, backend):
    ints = [0, 1, -1, 2**23 - 1, -(2**23), 123456, -654321]
    raw = b"".join((v & 0xFFFFFF).to_bytes(3, "little") for v in ints)
    x, _ = read_audio(write_wav(tmp_path / "a24.wav", raw, width=3), backend=backend)
    torch.testing.assert_close(x, torch.tensor([v / 2**23 for v in ints]), rtol=0, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_8_and_32_bit_pcm(tmp_path, backend):
    x8, _ = read_audio(write_wav(tmp_path / "a8.wav", bytes([128, 0, 255, 192]), width=1),
                       backend=backend)
    assert x8.tolist() == [0.0, -1.0, 127 / 128, 0.5]
    ints = [0, 2**30, -(2**31)]
    x32, _ = read_audio(write_wav(tmp_path / "a32.wav", struct.pack("<3i", *ints), width=4),
                        backend=backend)
    torch.testing.assert_close(x32, torch.tensor([0.0, 0.5, -1.0]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_stereo_is_mixed_down_to_the_mean_of_its_channels(tmp_path, backend):
    left, right = [1000, -2000, 3000], [3000, 2000, -3000]
    raw = struct.pack("<6h", *[v for pair in zip(left, right) for v in pair])
    x, _ = read_audio(write_wav(tmp_path / "st.wav", raw, channels=2), backend=backend)
    assert x.tolist() == [(a + b) / 2 / 32768 for a, b in zip(left, right)]


@pytest.mark.skipif(audio.soundfile is None, reason="soundfile is not installed")
def test_float_wav_needs_soundfile_and_the_wave_reader_says_so(tmp_path):
    f = tmp_path / "float.wav"
    audio.soundfile.write(str(f), np.array([0.25, -0.5, 0.125], dtype=np.float32), 8000,
                          subtype="FLOAT")
    assert read_audio(f)[0].tolist() == [0.25, -0.5, 0.125]
    with pytest.raises(DataError, match=r"float\.wav: expected a PCM WAV file.*soundfile"):
        read_audio(f, backend="wave")


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_files_are_errors_naming_them(tmp_path, backend):
    text = tmp_path / "notes.wav"
    text.write_text("these are not samples\n")
    with pytest.raises(DataError, match=r"notes\.wav: expected a.*file.*b'these are no"):
        read_audio(text, backend=backend)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.wav: expected .*an empty file \(0 bytes\)"):
        read_audio(empty, backend=backend)
    silent = write_wav(tmp_path / "silent.wav", b"")
    with pytest.raises(DataError, match=r"silent\.wav: expected audio samples, got a file "
                                        r"with none"):
        read_audio(silent, backend=backend)
    with pytest.raises(DataError, match=r"expected an audio file at .*missing\.wav"):
        read_audio(tmp_path / "missing.wav", backend=backend)
    truncated = tmp_path / "cut.wav"
    truncated.write_bytes(write_wav(tmp_path / "ok.wav", b"\x00\x01" * 50).read_bytes()[:30])
    with pytest.raises(DataError, match=r"cut\.wav"):
        read_audio(truncated, backend=backend)


def test_read_audio_resamples_to_the_asked_rate(tmp_path):
    t = np.arange(16000) / 16000
    ints = np.round(np.sin(2 * np.pi * 300 * t) * 20000).astype("<i2")
    f = write_wav(tmp_path / "tone.wav", ints.tobytes(), rate=16000)
    x, rate = read_audio(f, sample_rate=8000)
    assert rate == 8000 and len(x) == 8000
    ref = np.sin(2 * np.pi * 300 * np.arange(8000) / 8000) * 20000 / 32768
    assert np.abs(x.numpy() - ref)[100:-100].max() < 2e-3


# ---------------------------------------------------------------------- resampling


def reference_resample(x: list[float], r: int, r2: int) -> list[float]:
    """The module docstring's sum, one output sample at a time, in float64."""
    g = math.gcd(r, r2)
    up, down = r2 // g, r // g
    rho = audio.ROLLOFF * min(1.0, up / down)
    Z = audio.ZERO_CROSSINGS
    out = []
    for n in range(math.ceil(len(x) * up / down)):
        tau = n * down / up
        s = 0.0
        for k, xk in enumerate(x):
            u = k - tau
            v = u * rho / Z
            if abs(v) > 1:
                continue
            sinc = 1.0 if u == 0 else math.sin(math.pi * rho * u) / (math.pi * rho * u)
            s += xk * rho * sinc * math.cos(math.pi * v / 2) ** 2
        out.append(s)
    return out


@pytest.mark.parametrize("r, r2", [(16000, 8000), (8000, 16000), (8000, 11025), (44100, 16000),
                                   (3, 2)])
def test_resample_is_the_formula_summed_sample_by_sample(r, r2):
    g = torch.Generator().manual_seed(r + r2)
    x = torch.randn(97, generator=g, dtype=torch.float64)
    got = resample(x, r, r2)
    ref = torch.tensor(reference_resample(x.tolist(), r, r2), dtype=torch.float64)
    assert got.shape == ref.shape == (math.ceil(97 * r2 / r),)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("r, r2", [(16000, 8000), (8000, 16000), (8000, 22050)])
def test_resampled_tones_are_the_tone_at_the_new_rate(r, r2):
    f = 440.0
    x = torch.sin(2 * math.pi * f * torch.arange(r, dtype=torch.float64) / r)
    y = resample(x, r, r2)
    ref = torch.sin(2 * math.pi * f * torch.arange(len(y), dtype=torch.float64) / r2)
    edge = r2 // 20
    assert (y - ref)[edge:-edge].abs().max() < 1e-3
    dc = resample(torch.ones(2000, dtype=torch.float64), r, r2)
    assert (dc[len(dc) // 4: -len(dc) // 4] - 1).abs().max() < 1e-3


def test_downsampling_removes_tones_above_the_new_nyquist_frequency():
    x = torch.sin(2 * math.pi * 6000 * torch.arange(16000, dtype=torch.float64) / 16000)
    y = resample(x, 16000, 8000)  # 6 kHz would alias to 2 kHz
    assert y[400:-400].abs().max() < 0.01


def test_resample_keeps_channels_and_identity():
    x = torch.randn(2, 300)
    assert resample(x, 8000, 16000).shape == (2, 600)
    torch.testing.assert_close(resample(x, 8000, 16000)[1], resample(x[1], 8000, 16000))
    assert torch.equal(resample(x, 8000, 8000), x)
    with pytest.raises(ValueError, match="positive sample rates"):
        resample(x, 0, 8000)


# ---------------------------------------------------------------------- features


def reference_filterbank(n_fft, n_mels, rate, f_min, f_max):
    def mel(f):
        return 2595 * math.log10(1 + f / 700)

    def hz(m):
        return 700 * (10 ** (m / 2595) - 1)

    points = [hz(mel(f_min) + i * (mel(f_max) - mel(f_min)) / (n_mels + 1))
              for i in range(n_mels + 2)]
    bank = []
    for j in range(1, n_mels + 1):
        row = []
        for k in range(n_fft // 2 + 1):
            f = k * rate / n_fft
            if points[j - 1] <= f <= points[j]:
                row.append((f - points[j - 1]) / (points[j] - points[j - 1]))
            elif points[j] < f <= points[j + 1]:
                row.append((points[j + 1] - f) / (points[j + 1] - points[j]))
            else:
                row.append(0.0)
        bank.append(row)
    return torch.tensor(bank)


@pytest.mark.parametrize("n_fft, n_mels, rate, f_min, f_max",
                         [(256, 23, 8000, 0.0, 4000.0), (512, 40, 16000, 20.0, 7600.0)])
def test_mel_filterbank_is_the_triangles_of_the_definition(n_fft, n_mels, rate, f_min, f_max):
    got = mel_filterbank(n_fft, n_mels, rate, f_min, f_max)
    torch.testing.assert_close(got, reference_filterbank(n_fft, n_mels, rate, f_min, f_max),
                               rtol=0, atol=1e-6)
    assert abs(float(hz_to_mel(1000.0)) - 1000.0) < 0.02  # the HTK scale's anchor


def test_dct_is_the_orthonormal_dct_ii():
    m = dct_matrix(13, 40)
    for i in (0, 3, 12):
        for j in (0, 7, 39):
            scale = math.sqrt((1 if i == 0 else 2) / 40)
            assert abs(float(m[i, j]) - scale * math.cos(math.pi * i * (j + 0.5) / 40)) < 1e-6
    square = dct_matrix(16, 16).double()
    torch.testing.assert_close(square @ square.T, torch.eye(16, dtype=torch.float64),
                               atol=1e-6, rtol=0)
    x = torch.randn(5, 40)
    torch.testing.assert_close(mfcc(x, 13), x @ m.T)


def test_log_mel_frames_equal_numpy_frames_of_the_padded_signal():
    spec = FeatureSpec(sample_rate=8000, n_mels=23, frame_ms=25, hop_ms=10)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1234, generator=g) * 0.1
    got = log_mel(x, spec)
    win, hop, n_fft = spec.win_length, spec.hop_length, spec.n_fft
    assert (win, hop, n_fft) == (200, 80, 256)
    padded = np.concatenate([np.zeros(n_fft // 2), x.numpy().astype(np.float64),
                             np.zeros(n_fft // 2)])
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic
    window = np.zeros(n_fft)
    window[(n_fft - win) // 2:(n_fft - win) // 2 + win] = hann  # centred in the FFT frame
    bank = reference_filterbank(n_fft, 23, 8000, 0.0, 4000.0).double().numpy()
    frames = spec.frames(len(x))
    assert got.shape == (frames, 23) == (1 + 1234 // 80, 23)
    for t in (0, 1, 7, frames - 1):
        seg = padded[t * hop: t * hop + n_fft] * window
        power = np.abs(np.fft.rfft(seg)) ** 2
        ref = np.log(bank @ power + 1e-6)
        np.testing.assert_allclose(got[t].numpy(), ref, rtol=1e-4, atol=1e-4)


def test_normalize_and_the_feature_kinds():
    x = torch.randn(50, 8) * 3 + 5
    z = normalize(x)
    torch.testing.assert_close(z.mean(0), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(8), atol=1e-4, rtol=0)
    wave_ = torch.randn(4000) * 0.1
    spec = FeatureSpec(sample_rate=8000, kind="mfcc", n_mels=23, n_mfcc=13, normalize=False)
    torch.testing.assert_close(features(wave_, spec), mfcc(log_mel(wave_, spec), 13))
    assert features(wave_, FeatureSpec(sample_rate=8000, n_mels=23)).shape == (51, 23)


@pytest.mark.parametrize("bad, match", [
    ({"kind": "fbank"}, "kind"), ({"kind": "mfcc", "n_mfcc": 50}, "n_mfcc <= n_mels"),
    ({"hop_ms": 30.0}, "hop_ms <= frame_ms"), ({"f_max": 9000.0}, "f_max <= 8000"),
    ({"frame_ms": 0.05, "hop_ms": 0.05}, "at least 2 samples")])
def test_feature_spec_refuses_settings_that_make_no_features(bad, match):
    with pytest.raises(ValueError, match=match):
        FeatureSpec(**{"sample_rate": 16000, **bad})


def test_spec_augment_masks_are_seeded_bounded_and_leave_the_input_alone():
    x = torch.randn(100, 20) + 10  # no zeros of its own
    def draw(seed):
        return spec_augment(x, generator=torch.Generator().manual_seed(seed), time_masks=2,
                            time_width=10, freq_masks=2, freq_width=5)
    a, b, c = draw(1), draw(1), draw(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (x > 0).all()  # the input is untouched
    zero = a == 0
    full_cols = zero.all(0).sum()
    full_rows = zero.all(1).sum()
    assert full_cols <= 10 and full_rows <= 20
    # every zero lies in a masked feature column or a masked frame row
    assert (zero == (zero.all(0)[None, :] | zero.all(1)[:, None])).all()
    short = spec_augment(torch.ones(8, 4), generator=torch.Generator().manual_seed(0),
                         time_masks=3, time_width=50, freq_masks=0)
    assert short.eq(0).all(1).sum() <= 3 * int(0.2 * 8)  # at most p T frames per mask


def test_feature_cache_computes_once_and_reads_back_from_disk(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return torch.arange(6.0).reshape(2, 3)

    cache = FeatureCache(tmp_path / "cache")
    first = cache.get("utt-1|spec", compute)
    again = cache.get("utt-1|spec", compute)
    assert torch.equal(first, again) and len(calls) == 1
    assert (cache.hits, cache.misses) == (1, 1)
    fresh = FeatureCache(tmp_path / "cache")  # another run: from disk, no compute
    assert torch.equal(fresh.get("utt-1|spec", compute), first) and len(calls) == 1
    assert fresh.hits == 1
    memory = FeatureCache()
    memory.get("a", compute)
    memory.get("b", compute)
    assert len(memory) == 2 and len(calls) == 3
