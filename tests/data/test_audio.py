"""Tests for avformer.data.audio (fbank/logmel/waveform frontends, SpecAugment, stats) and `avformer stats`."""

from __future__ import annotations

import csv
import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from avformer.data.audio import (
    AST_MEAN,
    AST_STD,
    AudioFeatureConfig,
    AudioFeatures,
    RunningMoments,
    SpecAugment,
    compute_stats,
    kaldi_fbank,
    log_mel_spectrogram,
    mel_filter_bank,
    normalize,
    num_fbank_frames,
    pad_or_crop,
    spec_augment,
    spec_augment_masks,
)
from tests._paths import shared_path

SR = 16000


def _chirp(n: int, f0: float = 50.0, f1: float = 7900.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(n) / SR
    dur = n / SR
    return (amp * np.sin(2 * np.pi * (f0 * t + (f1 - f0) / (2 * dur) * t**2))).astype(np.float32)


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as f:
        assert f.getsampwidth() == 2 and f.getnchannels() == 1 and f.getframerate() == SR
        data = f.readframes(f.getnframes())
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def _write_wav(path: Path, x: np.ndarray, sr: int = SR) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sr)
        f.writeframes(np.round(np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    speech = sorted(shared_path("speech-commands", "wav", "yes").glob("*.wav"))
    return {
        "noise_48123": (0.3 * rng.uniform(-1, 1, 48123)).astype(np.float32),  # (48123 - 400) % 160 = 43
        "chirp_32077": _chirp(32077),
        "noise_long_168081": (0.1 * rng.standard_normal(168081)).astype(np.float32),  # 1048 frames: cropped
        "speech_16000": _read_wav(speech[0]),  # (16000 - 400) % 160 = 80
        "speech_cut_12345": _read_wav(speech[1])[:12345],
    }


# ---- parity with transformers' ASTFeatureExtractor -------------------------------------------------------------------
@pytest.mark.parity
@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
def test_fbank_parity_ast_extractor() -> None:
    """Our fbank == ``ASTFeatureExtractor`` (numpy path, float64 inside) on noise, a chirp and real speech.

    transformers takes the numpy path when ``is_speech_available()`` is False (torchaudio absent, as here). All five
    lengths leave a remainder after the last hop; one is longer than 1024 frames (cropped), the others are padded.
    Measured (transformers 5.23, torch 2.13 CPU); in the log-mel domain an abs error is the relative error of the
    mel energy:
      - float64 input: raw fbank max abs 5.7e-7 (the reference rounds its output to float32); full AST output
        (pad/crop to 1024, ``(x - mean) / (2 std)``, transposed) max abs 1.4e-7, max rel 2.4e-5 (|ref| > 1e-3).
      - float32 input: max abs 4.0e-5 on bands within 50 dB of the frame's loudest band, 1.1e-4 within 60 dB;
        further down the float32 FFT's round-off floor dominates (max 1.2e-2, on the chirp's bands > 80 dB down).
        torchaudio's float32 Kaldi fbank, AST's own training frontend, has the same floor.
    """
    pytest.importorskip("transformers")
    from transformers import ASTFeatureExtractor
    from transformers.utils import is_speech_available

    if is_speech_available():
        pytest.skip("torchaudio is installed: transformers would not use its numpy path")
    ref_raw = ASTFeatureExtractor(do_normalize=False)
    ref_norm = ASTFeatureExtractor()  # AST defaults: 1024 frames, AudioSet mean/std
    ours64 = AudioFeatures(AudioFeatureConfig()).eval()
    for name, w in _signals().items():
        n = num_fbank_frames(len(w))
        assert (len(w) - 400) % 160 != 0, name
        expected = ref_raw(w, sampling_rate=SR, return_tensors="np")["input_values"][0]  # (1024, F), padded
        expected = torch.from_numpy(expected[: min(n, 1024)]).double()

        got64 = kaldi_fbank(torch.from_numpy(w).double())[:1024]  # (T, F)
        assert got64.dtype == torch.float64 and got64.shape == expected.shape, name
        torch.testing.assert_close(got64, expected, rtol=0, atol=2e-6, msg=name)  # = 2e-6 relative energy

        got32 = kaldi_fbank(torch.from_numpy(w))[:1024].double()
        within_50db = expected >= expected.amax(dim=1, keepdim=True) - 5 * math.log(10)  # 50 dB = 11.5 nats
        err32 = (got32 - expected).abs()
        assert err32[within_50db].max() < 1e-4, name
        assert err32.max() < 3e-2, name  # float32 round-off floor far below the loudest band

        # full AST pipeline: pad/crop to 1024 frames, normalise, (1, F, T) layout
        exp_norm = torch.from_numpy(ref_norm(w, sampling_rate=SR, return_tensors="np")["input_values"][0]).double()
        got_norm = ours64(torch.from_numpy(w).double())
        assert got_norm.shape == (1, 128, 1024)
        torch.testing.assert_close(got_norm[0].T, exp_norm, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parity
@pytest.mark.parametrize(("window", "preemphasis", "n_mels"), [("povey", 0.97, 64), ("hamming", 0.5, 80)])
def test_fbank_parity_other_options(window: str, preemphasis: float, n_mels: int) -> None:
    """Other windows, pre-emphasis and bin counts against transformers' ``spectrogram`` (Kaldi settings).

    The Hann and Povey windows are 0 at the frame edges, so only the Hamming case checks that pre-emphasis scales
    the first sample of a frame by ``1 - c`` (Kaldi). Measured max abs (log domain, float64): 6e-7.
    """
    pytest.importorskip("transformers")
    from transformers.audio_utils import mel_filter_bank as hf_mel
    from transformers.audio_utils import spectrogram, window_function

    w = _chirp(9999, amp=0.3) + (0.01 * np.random.default_rng(3).standard_normal(9999)).astype(np.float32)
    expected = spectrogram(
        w,
        window_function(400, window, periodic=False),
        frame_length=400,
        hop_length=160,
        fft_length=512,
        power=2.0,
        center=False,
        preemphasis=preemphasis,
        log_mel="log",
        mel_floor=1.192092955078125e-07,
        remove_dc_offset=True,
        mel_filters=hf_mel(257, n_mels, 20, 8000, SR, mel_scale="kaldi", triangularize_in_mel_space=True),
    ).T  # (T, F)
    got = kaldi_fbank(torch.from_numpy(w).double(), window=window, preemphasis=preemphasis, num_mel_bins=n_mels)
    torch.testing.assert_close(got, torch.from_numpy(expected).double(), rtol=0, atol=2e-6)


@pytest.mark.parity
@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
@pytest.mark.parametrize(
    ("scale", "norm", "in_mel", "low", "high"),
    [("kaldi", None, True, 20.0, 8000.0), ("slaney", "slaney", False, 0.0, 8000.0), ("htk", None, False, 30, 7000)],
)
def test_mel_filter_bank_parity(scale: str, norm: str | None, in_mel: bool, low: float, high: float) -> None:
    pytest.importorskip("transformers")
    from transformers.audio_utils import mel_filter_bank as hf_mel

    expected = hf_mel(257, 64, low, high, SR, norm=norm, mel_scale=scale, triangularize_in_mel_space=in_mel)
    got = mel_filter_bank(
        64, 512, SR, low, high, mel_scale=scale, triangles_in_mel=in_mel, norm=norm, dtype=torch.float64
    )
    torch.testing.assert_close(got, torch.from_numpy(expected), rtol=1e-9, atol=1e-12)


def test_mel_filter_bank_kaldi_nyquist_row_zero_and_cached() -> None:
    fb = mel_filter_bank(128, 512, SR)
    assert fb.shape == (257, 128)
    assert fb[-1].abs().max() == 0  # Kaldi has no Nyquist bin
    assert (fb >= 0).all() and fb.max() <= 1
    assert mel_filter_bank(128, 512, SR) is fb  # built once per device/dtype
    assert mel_filter_bank(128, 512, SR, dtype=torch.float64) is not fb


# ---- fbank -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("s", "t"), [(399, 0), (400, 1), (559, 1), (560, 2), (16000, 98), (16001, 98), (16080, 99)])
def test_fbank_frame_count(s: int, t: int) -> None:
    assert num_fbank_frames(s) == t
    assert t == (1 + (s - 400) // 160 if s >= 400 else 0)
    out = kaldi_fbank(torch.randn(s) * 0.1)
    assert out.shape == (t, 128)
    assert kaldi_fbank(torch.randn(3, s) * 0.1).shape == (3, t, 128)


def test_fbank_known_values_and_scale() -> None:
    floor = math.log(torch.finfo(torch.float32).eps)
    # silence -> every band at the floor
    assert torch.allclose(kaldi_fbank(torch.zeros(1000)), torch.tensor(floor))
    # with 128 bins and a 512-point FFT, Kaldi's (and AST's) mel filter 3 covers no FFT bin: always at the floor
    x = torch.randn(8000, dtype=torch.float64) * 0.1
    out = kaldi_fbank(x)
    assert torch.equal((out == floor).all(dim=0).nonzero().flatten(), torch.tensor([3]))
    # doubling the amplitude adds log(4) to every other band
    live = torch.arange(128) != 3
    torch.testing.assert_close(kaldi_fbank(2 * x)[:, live], out[:, live] + math.log(4.0))
    # global DC offset is removed per frame (why AST's waveform.mean() subtraction is not needed)
    torch.testing.assert_close(kaldi_fbank(x + 0.3), kaldi_fbank(x), atol=1e-9, rtol=0)


@pytest.mark.parametrize("kind", ["fbank", "logmel"])
def test_batched_equals_per_sample(kind: str) -> None:
    frontend = AudioFeatures(AudioFeatureConfig(kind=kind, num_frames=300)).eval()
    x = torch.randn(3, 20123) * 0.2
    batched = frontend(x)
    assert batched.shape == (3, 1, 128, 300)
    for i in range(3):
        torch.testing.assert_close(batched[i], frontend(x[i]), rtol=1e-5, atol=1e-5)


def test_fbank_float64_path_and_half_inputs() -> None:
    x = torch.randn(2, 8000, dtype=torch.float64) * 0.2
    out64 = kaldi_fbank(x, window="povey")
    assert out64.dtype == torch.float64
    out32 = kaldi_fbank(x.float(), window="povey")
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64, rtol=0, atol=1e-3)
    out_bf16 = kaldi_fbank(x.bfloat16())
    assert out_bf16.dtype == torch.bfloat16 and out_bf16.shape == out64.shape
    with pytest.raises(TypeError, match="floating-point"):
        kaldi_fbank(torch.zeros(1000, dtype=torch.int16))
    with pytest.raises(ValueError, match=r"\(S,\) or \(B, S\)"):
        kaldi_fbank(torch.zeros(1, 1, 1000))


def test_fbank_window_choice_matters() -> None:
    x = torch.randn(4000, dtype=torch.float64) * 0.2
    assert not torch.allclose(kaldi_fbank(x, window="hanning"), kaldi_fbank(x, window="povey"))


def test_dither_uses_generator_and_only_in_training() -> None:
    cfg = AudioFeatureConfig(dither=1e-3, num_frames=None, mean=None, std=None)
    frontend = AudioFeatures(cfg)
    x = torch.zeros(4000)
    a = frontend(x, generator=torch.Generator().manual_seed(1))
    b = frontend(x, generator=torch.Generator().manual_seed(1))
    c = frontend(x, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    floor = math.log(torch.finfo(torch.float32).eps)
    assert (a > floor + 1).float().mean() > 0.9  # the noise lifts silence off the floor
    frontend.eval()
    e = frontend(x, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(e, torch.tensor(math.log(torch.finfo(torch.float32).eps)))


# ---- pad/crop, normalisation, layout ---------------------------------------------------------------------------------
def test_pad_or_crop() -> None:
    x = torch.arange(12.0).reshape(3, 4)
    assert torch.equal(pad_or_crop(x, 2, dim=0), x[:2])
    padded = pad_or_crop(x, 5, dim=0)
    assert padded.shape == (5, 4) and torch.equal(padded[:3], x) and padded[3:].abs().sum() == 0
    assert pad_or_crop(x, 4, dim=-1) is x


def test_frontend_pad_crop_and_normalisation() -> None:
    x = torch.randn(SR) * 0.1  # 98 frames
    raw = kaldi_fbank(x)  # (98, 128)
    frontend = AudioFeatures(AudioFeatureConfig(num_frames=120))
    out = frontend(x)
    assert out.shape == (1, 128, 120)
    # normalisation formula, F-first layout, and padding with raw zeros *before* normalisation (as AST)
    torch.testing.assert_close(out[0, :, :98], (raw.T - AST_MEAN) / (2 * AST_STD))
    torch.testing.assert_close(out[0, :, 98:], torch.full((128, 22), -AST_MEAN / (2 * AST_STD)))
    cropped = AudioFeatures(AudioFeatureConfig(num_frames=50, mean=-3.0, std=2.0))(x)
    torch.testing.assert_close(cropped[0], (raw[:50].T + 3.0) / 4.0)
    torch.testing.assert_close(normalize(torch.tensor([1.0]), 1.0, 3.0), torch.tensor([0.0]))
    unnormalised = AudioFeatures(AudioFeatureConfig(num_frames=None, mean=None, std=None))(x)
    torch.testing.assert_close(unnormalised[0], raw.T)
    # a clip shorter than one window is all padding
    short = AudioFeatures(AudioFeatureConfig(num_frames=8))(torch.randn(300))
    torch.testing.assert_close(short, torch.full((1, 128, 8), -AST_MEAN / (2 * AST_STD)))


# ---- logmel ----------------------------------------------------------------------------------------------------------
def _numpy_logmel(x: np.ndarray, n_mels: int, low: float, high: float) -> np.ndarray:
    """Naive reference: centred reflect-padded frames, periodic Hann(400) centred in 512, rfft, HTK mel in Hz."""
    n_fft, win, hop = 512, 400, 160
    w = np.zeros(n_fft)
    w[(n_fft - win) // 2 : (n_fft - win) // 2 + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    xp = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
    frames = np.stack([xp[i * hop : i * hop + n_fft] for i in range(1 + len(x) // hop)])
    power = np.abs(np.fft.rfft(frames * w, axis=-1)) ** 2  # (T, 257)
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    hz = 700 * (10 ** (np.linspace(mel(low), mel(high), n_mels + 2) / 2595) - 1)
    f = np.arange(257) * SR / n_fft
    fb = np.zeros((257, n_mels))
    for m in range(n_mels):
        left, c, right = hz[m], hz[m + 1], hz[m + 2]
        fb[:, m] = np.clip(np.minimum((f - left) / (c - left), (right - f) / (right - c)), 0, None)
    return np.log(power @ fb + 1e-6)


def test_logmel_sine_peak_and_numpy_reference() -> None:
    n_mels, low, high = 64, 20.0, 8000.0
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    centres = 700 * (10 ** (np.linspace(mel(low), mel(high), n_mels + 2)[1:-1] / 2595) - 1)
    k = 37
    x = 0.5 * np.sin(2 * np.pi * centres[k] * np.arange(12345) / SR)  # tone at the centre of mel bin 37
    got = log_mel_spectrogram(torch.from_numpy(x), num_mel_bins=n_mels, low_freq=low, high_freq=high, eps=1e-6)
    assert got.shape == (1 + 12345 // 160, n_mels) and got.dtype == torch.float64
    assert (got[2:-2].argmax(dim=1) == k).all()  # peak in the right bin (edge frames see reflected signal)
    torch.testing.assert_close(got, torch.from_numpy(_numpy_logmel(x, n_mels, low, high)), rtol=1e-7, atol=1e-7)
    got32 = log_mel_spectrogram(torch.from_numpy(x).float(), num_mel_bins=n_mels, low_freq=low, eps=1e-6)
    torch.testing.assert_close(got32.double(), got, rtol=0, atol=5e-3)


def test_logmel_options() -> None:
    x = torch.randn(2, 8000, dtype=torch.float64) * 0.1
    htk = log_mel_spectrogram(x, mel_scale="htk")
    slaney = log_mel_spectrogram(x, mel_scale="slaney", mel_norm="slaney")
    assert htk.shape == slaney.shape == (2, 51, 128)
    assert not torch.allclose(htk, slaney)
    with pytest.raises(ValueError, match="n_fft // 2"):
        log_mel_spectrogram(torch.zeros(200))
    out = AudioFeatures(AudioFeatureConfig(kind="logmel", window="hann", num_frames=None, mean=None, std=None))(x[0])
    torch.testing.assert_close(out[0], log_mel_spectrogram(x[0], eps=torch.finfo(torch.float32).eps).T)


# ---- waveform kind ---------------------------------------------------------------------------------------------------
def test_waveform_kind() -> None:
    x = torch.randn(2, 1000) * 0.1
    assert torch.equal(AudioFeatures(AudioFeatureConfig(kind="waveform"))(x[0]), x[:1])
    out = AudioFeatures(AudioFeatureConfig(kind="waveform", num_samples=1200, waveform_norm="peak"))(x)
    assert out.shape == (2, 1, 1200)
    torch.testing.assert_close(out.abs().amax(dim=-1), torch.ones(2, 1))
    assert out[..., 1000:].abs().sum() == 0
    rms = AudioFeatures(AudioFeatureConfig(kind="waveform", num_samples=500, waveform_norm="rms"))(x)
    assert rms.shape == (2, 1, 500)
    torch.testing.assert_close(rms.square().mean(dim=-1).sqrt(), torch.ones(2, 1))
    torch.testing.assert_close(rms[:, 0] / x[:, :500], (rms[:, 0] / x[:, :500])[:, :1].expand(2, 500))


# ---- config ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "mfcc"}, "kind"),
        ({"window": "blackman"}, "window"),
        ({"mean": 1.0, "std": None}, "both"),
        ({"std": 0.0}, "std"),
        ({"num_frames": 0}, "num_frames"),
        ({"low_freq": 9000.0}, "low_freq"),
        ({"high_freq": 9000.0}, "low_freq"),
        ({"mel_scale": "bark"}, "mel_scale"),
        ({"waveform_norm": "max"}, "waveform_norm"),
        ({"frame_length_ms": 0.05}, "frame_length_ms"),
        ({"dither": -1.0}, "dither"),
    ],
)
def test_config_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AudioFeatureConfig(**kwargs)  # type: ignore[arg-type]


def test_config_defaults_are_ast() -> None:
    cfg = AudioFeatureConfig()
    assert (cfg.frame_length, cfg.frame_shift, cfg.num_mel_bins, cfg.num_frames) == (400, 160, 128, 1024)
    assert (cfg.mean, cfg.std, cfg.window, cfg.preemphasis) == (AST_MEAN, AST_STD, "hanning", 0.97)


# ---- SpecAugment -----------------------------------------------------------------------------------------------------
def test_spec_augment_identity_at_zero() -> None:
    x = torch.randn(2, 1, 16, 40)
    assert spec_augment(x, freq_mask_param=0, time_mask_param=0) is x
    assert spec_augment(x, freq_mask_param=5, time_mask_param=5, num_freq_masks=0, num_time_masks=0) is x
    assert SpecAugment()(x) is x
    module = SpecAugment(8, 8).eval()
    assert module(x) is x


def _expected_bands(gen: torch.Generator, b: int, size: int, param: int, n: int) -> list[list[tuple[int, int]]]:
    """Replays the documented draw order: per mask, widths randint(0, param + 1), then floor(U (size - w + 1))."""
    bands: list[list[tuple[int, int]]] = [[] for _ in range(b)]
    for _ in range(n):
        width = torch.randint(0, param + 1, (b,), generator=gen)
        start = (torch.rand(b, generator=gen, dtype=torch.float64) * (size - width + 1)).floor().long()
        for i in range(b):
            bands[i].append((int(start[i]), int(start[i] + width[i])))
    return bands


def test_spec_augment_exact_bands_with_generator() -> None:
    b, f, t, fp, tp, nf, nt = 6, 32, 100, 10, 25, 2, 3
    x = torch.randn(b, 2, f, t) + 10.0  # nothing is 0 before masking
    out = spec_augment(
        x,
        freq_mask_param=fp,
        time_mask_param=tp,
        num_freq_masks=nf,
        num_time_masks=nt,
        generator=torch.Generator().manual_seed(123),
    )
    gen = torch.Generator().manual_seed(123)
    fbands = _expected_bands(gen, b, f, fp, nf)
    tbands = _expected_bands(gen, b, t, tp, nt)
    for i in range(b):
        fm = torch.zeros(f, dtype=torch.bool)
        tm = torch.zeros(t, dtype=torch.bool)
        for s, e in fbands[i]:
            assert 0 <= e - s <= fp and s >= 0 and e <= f
            fm[s:e] = True
        for s, e in tbands[i]:
            assert 0 <= e - s <= tp and s >= 0 and e <= t
            tm[s:e] = True
        expected_mask = fm[:, None] | tm[None, :]
        for c in range(2):  # same mask on every channel
            assert torch.equal(out[i, c] == 0, expected_mask)
            assert torch.equal(out[i, c][~expected_mask], x[i, c][~expected_mask])
    # per-sample masks differ within the batch
    fmask, tmask = spec_augment_masks(
        b, f, t, freq_mask_param=fp, time_mask_param=tp, generator=torch.Generator().manual_seed(0)
    )
    assert len({tuple(r.tolist()) for r in tmask}) > 1 and len({tuple(r.tolist()) for r in fmask}) > 1


def test_spec_augment_single_band_width_and_3d_input() -> None:
    x = torch.ones(1, 64, 200)
    widths = set()
    for seed in range(50):
        out = spec_augment(x, freq_mask_param=12, time_mask_param=0, generator=torch.Generator().manual_seed(seed))
        assert out.shape == x.shape
        rows = (out[0] == 0).all(dim=1)  # masked frequency rows span all time
        assert torch.equal((out[0] == 0).any(dim=1), rows)
        idx = rows.nonzero().flatten()
        if len(idx):
            assert idx[-1] - idx[0] + 1 == len(idx)  # one contiguous band
        widths.add(len(idx))
    assert max(widths) <= 12 and len(widths) > 5
    out = SpecAugment(0, 30, mask_value=-1.0)(x, generator=torch.Generator().manual_seed(3))
    assert set(out.unique().tolist()) <= {-1.0, 1.0}
    assert not (out[0] == -1).all(dim=1).any()  # time masks only: no fully masked frequency row
    with pytest.raises(ValueError, match="shape"):
        spec_augment(torch.ones(64, 200), freq_mask_param=3, time_mask_param=3)


# ---- stats -----------------------------------------------------------------------------------------------------------
def test_running_moments_merge_exact() -> None:
    a, b = torch.randn(1000, dtype=torch.float64) * 3 + 5, torch.randn(37, dtype=torch.float64) - 2
    m = RunningMoments.of(a).merge(RunningMoments.of(b)).merge(RunningMoments())
    both = torch.cat([a, b])
    assert m.count == 1037
    assert math.isclose(m.mean, float(both.mean()), rel_tol=1e-12)
    assert math.isclose(m.std, float(both.std(unbiased=False)), rel_tol=1e-12)


def test_compute_stats_matches_concatenated_features() -> None:
    rng = np.random.default_rng(1)
    clips = [
        (0.05 * rng.standard_normal(n)).astype(np.float32) * g for n, g in [(8000, 1.0), (20001, 3.0), (5555, 0.3)]
    ]
    clips.append(np.zeros(200, dtype=np.float32))  # shorter than one window: contributes nothing
    cfg = AudioFeatureConfig(num_frames=2000)  # mean/std/num_frames are ignored
    mean, std = compute_stats(iter(clips), cfg)
    feats = torch.cat([kaldi_fbank(torch.from_numpy(c)).flatten() for c in clips]).double()
    assert math.isclose(mean, float(feats.mean()), rel_tol=1e-6)
    assert math.isclose(std, float(feats.std(unbiased=False)), rel_tol=1e-6)
    mean_t, _ = compute_stats([torch.from_numpy(c) for c in clips], cfg)  # tensors work too
    assert math.isclose(mean, mean_t, rel_tol=1e-9)
    with pytest.raises(ValueError, match="no frames"):
        compute_stats([], cfg)
    with pytest.raises(ValueError, match="waveform"):
        compute_stats(clips, AudioFeatureConfig(kind="waveform"))


def test_stats_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest_mod = pytest.importorskip("avformer.data.manifest")
    pytest.importorskip("avformer.data.media")
    from avformer.cli.stats import main

    rng = np.random.default_rng(2)
    clips = []
    for i in range(3):
        x = (0.1 * (i + 1) * rng.standard_normal(SR // 2 + 37 * i)).astype(np.float32)
        _write_wav(tmp_path / f"clip{i}.wav", x)
        clips.append(np.round(np.clip(x, -1, 1) * 32767) / 32768)  # what the wav file holds
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wav")
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for name in ["clip0.wav", "broken.wav", "clip1.wav", "clip2.wav"]:
            w.writerow([name, "a"])
    assert len(manifest_mod.read_manifest(manifest, root=tmp_path)) == 4

    assert main([str(manifest), "--root", str(tmp_path), "--workers", "2"]) == 0
    out = capsys.readouterr()
    mean, std = compute_stats(clips, AudioFeatureConfig())
    assert "3 used, 1 skipped" in out.out and "broken.wav" in out.err
    values = dict(line.split(": ", 1) for line in out.out.splitlines() if line.startswith(("mean:", "std:")))
    assert math.isclose(float(values["mean"]), mean, rel_tol=1e-4)
    assert math.isclose(float(values["std"]), std, rel_tol=1e-4)
    assert f"audio: {{mean: {float(values['mean']):.7g}, std: {float(values['std']):.7g}}}" in out.out
    assert main([str(manifest), "--root", str(tmp_path), "--max-clips", "1"]) == 0
    assert "1 used, 0 skipped" in capsys.readouterr().out

    # [start, end) windows are honoured: quiet first half, loud second half, keep the second half only
    y = np.concatenate([0.01 * rng.standard_normal(SR // 2), 0.5 * rng.standard_normal(SR // 2)]).astype(np.float32)
    _write_wav(tmp_path / "two_halves.wav", y)
    windowed = tmp_path / "windowed.csv"
    windowed.write_text("path,label,start,end\ntwo_halves.wav,a,0.5,1.0\n")
    assert main([str(windowed)]) == 0  # root defaults to the manifest's folder
    out = capsys.readouterr().out
    mean_loud, _ = compute_stats([np.round(np.clip(y[SR // 2 :], -1, 1) * 32767) / 32768], AudioFeatureConfig())
    mean_all, _ = compute_stats([y], AudioFeatureConfig())
    got = float(next(line for line in out.splitlines() if line.startswith("mean:")).split(": ")[1])
    assert math.isclose(got, mean_loud, rel_tol=1e-3) and not math.isclose(got, mean_all, rel_tol=1e-2)
    assert main([str(tmp_path / "missing.csv")]) == 2

    # --config: the recipe's feature settings (64 mel bins, logmel); an explicit flag still wins
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: r\nmodel: {name: mat_tiny}\ndata: {audio: {num_mel_bins: 64, kind: logmel}}\n")
    assert main([str(windowed), "--config", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "num_mel_bins: 64, kind: logmel" in out
    loud = np.round(np.clip(y[SR // 2 :], -1, 1) * 32767) / 32768
    want, _ = compute_stats([loud], AudioFeatureConfig(num_mel_bins=64, kind="logmel", num_frames=None))
    got = float(next(line for line in out.splitlines() if line.startswith("mean:")).split(": ")[1])
    assert math.isclose(got, want, rel_tol=1e-2)
    assert main([str(windowed), "--config", str(recipe), "--num-mel-bins", "32"]) == 0
    assert "num_mel_bins: 32, kind: logmel" in capsys.readouterr().out


# ---- GPU -------------------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    x = torch.randn(4, 20000, dtype=torch.float64) * 0.2
    for kind in ("fbank", "logmel"):
        frontend = AudioFeatures(AudioFeatureConfig(kind=kind, num_frames=128)).eval()
        cpu, gpu = frontend(x), frontend(x.cuda())
        assert gpu.device.type == "cuda" and gpu.dtype == torch.float64
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-7, atol=1e-7)
        gpu32 = frontend(x.float().cuda())
        assert gpu32.dtype == torch.float32
        torch.testing.assert_close(gpu32.cpu().double(), cpu, rtol=0, atol=1e-3)
    spec = torch.randn(3, 1, 128, 128, device="cuda")
    a = spec_augment(spec, freq_mask_param=20, time_mask_param=20, generator=torch.Generator().manual_seed(0))
    b = spec_augment(spec.cpu(), freq_mask_param=20, time_mask_param=20, generator=torch.Generator().manual_seed(0))
    assert a.device.type == "cuda" and torch.equal(a.cpu(), b)
    g = torch.Generator(device="cuda").manual_seed(0)
    d = AudioFeatures(AudioFeatureConfig(dither=1e-4))(x.float().cuda(), generator=g)
    assert d.shape == (4, 1, 128, 1024) and d.device.type == "cuda"
