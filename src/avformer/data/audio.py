"""Audio features: Kaldi/AST log-mel filterbanks, plain STFT log-mel, raw waveform, SpecAugment, dataset stats.

References:
    - Gong et al., "AST: Audio Spectrogram Transformer", Interspeech 2021, https://arxiv.org/abs/2104.01778.
      Its recipe (``torchaudio.compliance.kaldi.fbank`` with ``htk_compat=True, use_energy=False,
      window_type='hanning', num_mel_bins=128, dither=0``, zero-pad/crop to 1024 frames, then
      ``(x - mean) / (2 * std)`` with the AudioSet mean/std) is the default here, so published AST weights work.
    - Kaldi ``compute-fbank-feats`` (``feat/feature-window.cc``, ``feat/mel-computations.cc``): frames with
      ``snip_edges=true``, dither, per-frame DC removal, pre-emphasis, window, FFT padded to a power of two, power
      spectrum, triangular filters that are linear on the mel scale ``1127 ln(1 + f / 700)``, ``log(max(x, eps))``.
    - Park et al., "SpecAugment", Interspeech 2019, https://arxiv.org/abs/1904.08779 (frequency and time masks).

Parity: ``kind='fbank'`` matches ``transformers.ASTFeatureExtractor`` (its numpy path, used when torchaudio is
absent) on random noise, a chirp and real speech (``tests/data/test_audio.py::test_fbank_parity_ast_extractor``).

Differences from the references:
    - Batched, device/dtype-following torch code (float16/bfloat16 inputs are computed in float32 and cast back);
      filterbank matrices and windows are built once per (parameters, device, dtype) and cached.
    - The waveform is used as given, float in [-1, 1]. Kaldi's command-line tool reads 16-bit integers, so its
      log-energies are ``2 ln(2**15) ≈ 20.79`` higher; AST (``torchaudio.load`` output) and transformers do not scale
      either (the ``* 2**15`` line in transformers' extractor is commented out), and the AudioSet mean/std assume this.
    - AST subtracts the clip mean from the waveform before the fbank; with per-frame DC removal (on by default) this
      changes nothing, so it is not done here.
    - Dither draws from an explicit ``torch.Generator`` and is applied only by a module in training mode. Its value is
      in waveform units (Kaldi's default 1.0 is for int16 samples; ``1 / 2**15`` is the equivalent here).
    - No VTLN, energy coefficient, ``snip_edges=False`` or time warping.
    - Kept on purpose: with 128 bins, 20 Hz and a 512-point FFT, Kaldi's mel filter 3 covers no FFT bin, so that
      row of AST's input is always ``log(eps)`` (transformers warns about it); changing it would break AST weights.
    - SpecAugment widths are uniform integers in ``[0, param]`` as in the paper (torchaudio draws
      ``floor(U * param)``, at most ``param - 1``); masks differ per sample in a batch (AST masks one sample at a time).

Where SpecAugment goes, and the mask value: AST masks the *raw* fbank with 0 (log-energy 0) and normalises after,
so a masked cell ends up at ``(0 - mean) / (2 * std) ≈ 0.467``. Here the recommended order is
``AudioFeatures`` (normalised) -> ``SpecAugment(mask_value=0.0)``: a masked cell is then the dataset mean, which is
what the SpecAugment paper does and which does not depend on the input scale. To reproduce AST exactly, use
``mask_value = -mean / (2 * std)`` (the same numbers, because normalisation is affine).

Layouts: the low-level functions return Kaldi's ``(..., T, F)`` (frames × mel bins); ``AudioFeatures`` returns the
model layout ``(B, 1, F, T)`` (frequency first) or ``(1, F, T)`` for a single clip.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "AST_MEAN",
    "AST_STD",
    "AudioFeatureConfig",
    "AudioFeatures",
    "RunningMoments",
    "SpecAugment",
    "compute_stats",
    "kaldi_fbank",
    "log_mel_spectrogram",
    "mel_filter_bank",
    "normalize",
    "num_fbank_frames",
    "pad_or_crop",
    "spec_augment",
    "spec_augment_masks",
]

AST_MEAN = -4.2677393  # AudioSet fbank mean used by AST (Gong et al. 2021)
AST_STD = 4.5689974  # AudioSet fbank std used by AST
FLOAT32_EPS = float(torch.finfo(torch.float32).eps)  # Kaldi's log floor (std::numeric_limits<float>::epsilon())

_KINDS = ("fbank", "logmel", "waveform")
_WINDOWS = ("hanning", "hann", "povey", "hamming", "rectangular")
_MEL_SCALES = ("htk", "kaldi", "slaney")
_WAVEFORM_NORMS = ("peak", "rms")


# ---- small helpers -------------------------------------------------------------------------------------------------
def _samples(sample_rate: int, ms: float) -> int:
    # Kaldi truncates: static_cast<int32>(samp_freq * 0.001 * frame_length_ms)
    return int(sample_rate * 0.001 * ms)


def _next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    if not dtype.is_floating_point:
        raise TypeError(f"waveform must be a floating-point tensor in [-1, 1], got {dtype}")
    return torch.float64 if dtype == torch.float64 else torch.float32


def _as_batch(waveform: Tensor) -> tuple[Tensor, bool]:
    """(S,) or (B, S) -> ((B, S), was_unbatched)."""
    if waveform.dim() == 1:
        return waveform.unsqueeze(0), True
    if waveform.dim() == 2:
        return waveform, False
    raise ValueError(f"waveform must be (S,) or (B, S), got shape {tuple(waveform.shape)}")


def num_fbank_frames(num_samples: int, frame_length: int = 400, frame_shift: int = 160) -> int:
    """Number of Kaldi frames with ``snip_edges=True``: ``1 + (S - L) // H``, or 0 when ``S < L``."""
    return 0 if num_samples < frame_length else 1 + (num_samples - frame_length) // frame_shift


# ---- cached constants ----------------------------------------------------------------------------------------------
def _hz_to_mel(f: Tensor, scale: str) -> Tensor:
    if scale == "kaldi":
        return 1127.0 * torch.log1p(f / 700.0)
    if scale == "htk":
        return 2595.0 * torch.log10(1.0 + f / 700.0)
    # slaney: linear below 1 kHz, logarithmic above
    logstep = math.log(6.4) / 27.0
    return torch.where(f < 1000.0, 3.0 * f / 200.0, 15.0 + torch.log(f.clamp_min(1e-10) / 1000.0) / logstep)


def _mel_to_hz(m: Tensor, scale: str) -> Tensor:
    if scale == "kaldi":
        return 700.0 * torch.expm1(m / 1127.0)
    if scale == "htk":
        return 700.0 * (torch.pow(10.0, m / 2595.0) - 1.0)
    logstep = math.log(6.4) / 27.0
    return torch.where(m < 15.0, 200.0 * m / 3.0, 1000.0 * torch.exp(logstep * (m - 15.0)))


@functools.lru_cache(maxsize=64)
def _mel_filter_bank_cached(
    num_mel_bins: int,
    n_fft: int,
    sample_rate: int,
    low_freq: float,
    high_freq: float,
    mel_scale: str,
    triangles_in_mel: bool,
    norm: str | None,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor:
    nyquist = 0.5 * sample_rate
    high = high_freq if high_freq > 0 else nyquist + high_freq
    if not 0.0 <= low_freq < high <= nyquist:
        raise ValueError(f"need 0 <= low_freq < high_freq <= Nyquist ({nyquist}), got {low_freq}, {high}")
    with torch.inference_mode(False):  # a cached tensor must stay usable outside inference mode
        f64 = torch.float64
        mel_edges = torch.linspace(
            float(_hz_to_mel(torch.tensor(low_freq, dtype=f64), mel_scale)),
            float(_hz_to_mel(torch.tensor(high, dtype=f64), mel_scale)),
            num_mel_bins + 2,
            dtype=f64,
        )  # (F + 2,) left edge, F centres, right edge
        bin_hz = torch.arange(n_fft // 2 + 1, dtype=f64) * (sample_rate / n_fft)  # (K,)
        if triangles_in_mel:  # Kaldi: triangles are linear in mel
            points, edges = _hz_to_mel(bin_hz, mel_scale), mel_edges
        else:  # librosa / torchaudio melscale_fbanks: triangles linear in Hz
            points, edges = bin_hz, _mel_to_hz(mel_edges, mel_scale)
        left, centre, right = edges[:-2], edges[1:-1], edges[2:]  # (F,)
        up = (points[:, None] - left) / (centre - left)  # (K, F)
        down = (right - points[:, None]) / (right - centre)
        fb = torch.minimum(up, down).clamp_min(0.0)  # (K, F)
        if norm == "slaney":  # equal area per filter
            hz = _mel_to_hz(mel_edges, mel_scale)
            fb = fb * (2.0 / (hz[2:] - hz[:-2]))
        return fb.to(device=device, dtype=dtype)


def mel_filter_bank(
    num_mel_bins: int,
    n_fft: int,
    sample_rate: int,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    *,
    mel_scale: str = "kaldi",
    triangles_in_mel: bool = True,
    norm: str | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Triangular mel filterbank matrix (built in float64, cached per arguments, device and dtype).

    Args:
        num_mel_bins: number of filters F.
        n_fft: FFT size; the matrix has ``n_fft // 2 + 1`` rows (the Nyquist row is all zero with Kaldi defaults).
        sample_rate: Hz.
        low_freq: lower edge of the first filter, Hz.
        high_freq: upper edge of the last filter, Hz; ``<= 0`` means Nyquist + high_freq (Kaldi's convention).
        mel_scale: 'kaldi' (1127 ln(1 + f/700)), 'htk' (2595 log10(1 + f/700), the same curve) or 'slaney'.
        triangles_in_mel: True for Kaldi (filters linear in mel); False for librosa/torchaudio ``melscale_fbanks``.
        norm: None or 'slaney' (divide each filter by its width in Hz / 2).
        device: where the matrix lives.
        dtype: its dtype.

    Returns:
        (n_fft // 2 + 1, F) matrix; ``power (..., K) @ fb -> (..., F)``. Treat it as read-only (it is shared).
    """
    if mel_scale not in _MEL_SCALES:
        raise ValueError(f"mel_scale must be one of {_MEL_SCALES}, got {mel_scale!r}")
    if norm not in (None, "slaney"):
        raise ValueError(f"norm must be None or 'slaney', got {norm!r}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return _mel_filter_bank_cached(
        num_mel_bins,
        n_fft,
        sample_rate,
        float(low_freq),
        float(high_freq),
        mel_scale,
        triangles_in_mel,
        norm,
        dev,
        dtype,
    )


@functools.lru_cache(maxsize=64)
def _window(name: str, length: int, periodic: bool, device: torch.device, dtype: torch.dtype) -> Tensor:
    with torch.inference_mode(False):
        f64 = torch.float64
        if name in ("hanning", "hann"):
            w = torch.hann_window(length, periodic=periodic, dtype=f64)
        elif name == "povey":  # Kaldi: symmetric Hann to the power 0.85
            w = torch.hann_window(length, periodic=periodic, dtype=f64).pow(0.85)
        elif name == "hamming":
            w = torch.hamming_window(length, periodic=periodic, dtype=f64)
        elif name == "rectangular":
            w = torch.ones(length, dtype=f64)
        else:
            raise ValueError(f"window must be one of {_WINDOWS}, got {name!r}")
        return w.to(device=device, dtype=dtype)


# ---- spectrogram functions -----------------------------------------------------------------------------------------
def kaldi_fbank(
    waveform: Tensor,
    *,
    sample_rate: int = 16000,
    num_mel_bins: int = 128,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    window: str = "hanning",
    preemphasis: float = 0.97,
    remove_dc_offset: bool = True,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    dither: float = 0.0,
    generator: torch.Generator | None = None,
    eps: float = FLOAT32_EPS,
) -> Tensor:
    """Kaldi ``compute-fbank-feats`` log-mel filterbank (AST's frontend), batched.

    Equivalent to ``torchaudio.compliance.kaldi.fbank(w, htk_compat=True, use_energy=False, window_type=window,
    dither=dither, ...)`` with ``snip_edges=True``, ``round_to_power_of_two=True``, ``use_power=True``.

    Args:
        waveform: (S,) or (B, S) float in [-1, 1] at ``sample_rate``.
        sample_rate: Hz.
        num_mel_bins: F.
        frame_length_ms: window length (25 ms = 400 samples at 16 kHz); FFT size is the next power of two.
        frame_shift_ms: hop (10 ms = 160 samples).
        window: 'hanning' (symmetric Hann, AST's choice), 'povey' (Kaldi's default), 'hamming' or 'rectangular'.
        preemphasis: coefficient c of ``x[n] - c x[n-1]`` inside each frame (0 disables).
        remove_dc_offset: subtract each frame's mean.
        low_freq: Hz, lower edge of the first filter.
        high_freq: Hz, upper edge of the last filter; ``<= 0`` is relative to Nyquist.
        dither: std of Gaussian noise added to every frame sample, in waveform units (0 = off).
        generator: RNG for dither (on any device; noise is moved to the waveform's device).
        eps: floor before the log.

    Returns:
        (T, F) or (B, T, F) log mel energies, ``T = 1 + (S - L) // H`` (0 when S < L), in the waveform's dtype.
    """
    x, unbatched = _as_batch(waveform)
    out_dtype = x.dtype
    dtype = _compute_dtype(out_dtype)
    x = x.to(dtype)
    frame_length, frame_shift = _samples(sample_rate, frame_length_ms), _samples(sample_rate, frame_shift_ms)
    if frame_length < 2 or frame_shift < 1:
        raise ValueError(f"frame length {frame_length} / shift {frame_shift} samples too small")
    n_fft = _next_pow2(frame_length)
    fb = mel_filter_bank(
        num_mel_bins, n_fft, sample_rate, low_freq, high_freq, mel_scale="kaldi", device=x.device, dtype=dtype
    )
    num_frames = num_fbank_frames(x.shape[-1], frame_length, frame_shift)
    if num_frames == 0:
        out = x.new_zeros(x.shape[0], 0, num_mel_bins)
        return (out[0] if unbatched else out).to(out_dtype)

    frames = x.unfold(-1, frame_length, frame_shift)  # (B, T, L), a view
    if dither != 0.0:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(frames.shape, generator=generator, device=gen_device, dtype=dtype)
        frames = frames + dither * noise.to(x.device)
    if remove_dc_offset:
        frames = frames - frames.mean(dim=-1, keepdim=True)
    if preemphasis != 0.0:
        # x[0] -> (1 - c) x[0] (Kaldi's "replicate" of the first sample), x[n] -> x[n] - c x[n-1]
        frames = torch.cat(
            [frames[..., :1] * (1.0 - preemphasis), frames[..., 1:] - preemphasis * frames[..., :-1]], dim=-1
        )
    frames = frames * _window(window, frame_length, False, x.device, dtype)  # Kaldi windows are symmetric
    spec = torch.fft.rfft(frames, n=n_fft)  # (B, T, K) complex, K = n_fft // 2 + 1
    power = spec.real.square() + spec.imag.square()  # (B, T, K)
    mel = torch.matmul(power, fb).clamp_min(eps).log()  # (B, T, F)
    mel = mel.to(out_dtype)
    return mel[0] if unbatched else mel


def log_mel_spectrogram(
    waveform: Tensor,
    *,
    sample_rate: int = 16000,
    num_mel_bins: int = 128,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    window: str = "hann",
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    mel_scale: str = "htk",
    mel_norm: str | None = None,
    eps: float = 1e-6,
) -> Tensor:
    """Plain log-mel spectrogram via ``torch.stft`` (centred frames, reflect padding, periodic window).

    ``log(mel(|STFT|**2) + eps)`` with triangles linear in Hz (torchaudio ``MelSpectrogram`` / librosa convention).

    Args:
        waveform: (S,) or (B, S) float at ``sample_rate``; needs ``S > n_fft // 2`` for reflect padding.
        sample_rate: Hz.
        num_mel_bins: F.
        frame_length_ms: window length; FFT size is the next power of two (window centred in it).
        frame_shift_ms: hop H.
        window: 'hann'/'hanning' (periodic Hann), 'povey', 'hamming' or 'rectangular'.
        low_freq: Hz.
        high_freq: Hz, ``<= 0`` is relative to Nyquist.
        mel_scale: 'htk', 'kaldi' or 'slaney'.
        mel_norm: None or 'slaney'.
        eps: offset added before the log.

    Returns:
        (T, F) or (B, T, F) with ``T = 1 + S // H``, in the waveform's dtype.
    """
    x, unbatched = _as_batch(waveform)
    out_dtype = x.dtype
    dtype = _compute_dtype(out_dtype)
    x = x.to(dtype)
    win_length, hop = _samples(sample_rate, frame_length_ms), _samples(sample_rate, frame_shift_ms)
    if win_length < 2 or hop < 1:
        raise ValueError(f"frame length {win_length} / shift {hop} samples too small")
    n_fft = _next_pow2(win_length)
    if x.shape[-1] <= n_fft // 2:
        raise ValueError(f"logmel needs more than n_fft // 2 = {n_fft // 2} samples, got {x.shape[-1]}")
    fb = mel_filter_bank(
        num_mel_bins,
        n_fft,
        sample_rate,
        low_freq,
        high_freq,
        mel_scale=mel_scale,
        triangles_in_mel=False,
        norm=mel_norm,
        device=x.device,
        dtype=dtype,
    )
    spec = torch.stft(
        x,
        n_fft=n_fft,
        hop_length=hop,
        win_length=win_length,
        window=_window(window, win_length, True, x.device, dtype),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )  # (B, K, T)
    power = (spec.real.square() + spec.imag.square()).transpose(-1, -2)  # (B, T, K)
    mel = (torch.matmul(power, fb) + eps).log().to(out_dtype)  # (B, T, F)
    return mel[0] if unbatched else mel


def pad_or_crop(x: Tensor, length: int, dim: int = -1) -> Tensor:
    """Zero-pad at the end or crop (keeping the start) ``dim`` to ``length`` (AST's ``target_length``)."""
    size = x.shape[dim]
    if size == length:
        return x
    if size > length:
        return x.narrow(dim, 0, length)
    pad_shape = list(x.shape)
    pad_shape[dim] = length - size
    return torch.cat([x, x.new_zeros(pad_shape)], dim=dim)


def normalize(x: Tensor, mean: float, std: float) -> Tensor:
    """AST normalisation ``(x - mean) / (2 * std)`` (note the 2: AST's inputs have std 0.5)."""
    return (x - mean) / (2.0 * std)


# ---- config + frontend ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioFeatureConfig:
    """What the audio frontend computes. Defaults reproduce AST's AudioSet preprocessing exactly.

    Fields marked (fbank) / (logmel) / (waveform) only apply to that kind.
    """

    kind: str = "fbank"  # 'fbank' (Kaldi/AST) | 'logmel' (torch.stft) | 'waveform' (raw, for VATT)
    sample_rate: int = 16000  # Hz; the waveform must already be at this rate
    num_mel_bins: int = 128  # F
    frame_length_ms: float = 25.0  # 400 samples at 16 kHz; FFT size 512
    frame_shift_ms: float = 10.0  # 160 samples: 100 frames per second
    window: str = "hanning"  # 'hanning' | 'hann' | 'povey' | 'hamming' | 'rectangular' (symmetric for fbank)
    preemphasis: float = 0.97  # (fbank)
    remove_dc_offset: bool = True  # (fbank) subtract each frame's mean
    dither: float = 0.0  # (fbank) Gaussian noise std in waveform units, training mode only
    low_freq: float = 20.0  # Hz
    high_freq: float = 0.0  # Hz; <= 0 means Nyquist + high_freq
    mel_scale: str = "htk"  # (logmel) 'htk' | 'kaldi' | 'slaney'; fbank always uses Kaldi's mel scale
    mel_norm: str | None = None  # (logmel) None | 'slaney'
    eps: float = FLOAT32_EPS  # fbank: log(max(x, eps)); logmel: log(x + eps)
    num_frames: int | None = 1024  # pad (zeros, before normalisation) / crop time to this; None = keep
    mean: float | None = AST_MEAN  # normalisation (x - mean) / (2 std); None = none (both or neither)
    std: float | None = AST_STD
    num_samples: int | None = None  # (waveform) pad/crop to this many samples; None = keep
    waveform_norm: str | None = None  # (waveform) None | 'peak' (max |x| = 1) | 'rms' (RMS = 1)

    def __post_init__(self) -> None:
        def bad(msg: str) -> ValueError:
            return ValueError(f"AudioFeatureConfig: {msg}")

        if self.kind not in _KINDS:
            raise bad(f"kind must be one of {_KINDS}, got {self.kind!r}")
        if self.sample_rate <= 0:
            raise bad(f"sample_rate must be > 0, got {self.sample_rate}")
        if self.num_mel_bins <= 0:
            raise bad(f"num_mel_bins must be > 0, got {self.num_mel_bins}")
        if _samples(self.sample_rate, self.frame_length_ms) < 2:
            raise bad(f"frame_length_ms={self.frame_length_ms} gives fewer than 2 samples")
        if _samples(self.sample_rate, self.frame_shift_ms) < 1:
            raise bad(f"frame_shift_ms={self.frame_shift_ms} gives less than 1 sample")
        if self.window not in _WINDOWS:
            raise bad(f"window must be one of {_WINDOWS}, got {self.window!r}")
        if not 0.0 <= self.preemphasis <= 1.0:
            raise bad(f"preemphasis must be in [0, 1], got {self.preemphasis}")
        if self.dither < 0:
            raise bad(f"dither must be >= 0, got {self.dither}")
        nyquist = self.sample_rate / 2
        high = self.high_freq if self.high_freq > 0 else nyquist + self.high_freq
        if not 0.0 <= self.low_freq < high <= nyquist:
            raise bad(f"need 0 <= low_freq < high_freq <= {nyquist} Hz, got {self.low_freq}, {high}")
        if self.mel_scale not in _MEL_SCALES:
            raise bad(f"mel_scale must be one of {_MEL_SCALES}, got {self.mel_scale!r}")
        if self.mel_norm not in (None, "slaney"):
            raise bad(f"mel_norm must be None or 'slaney', got {self.mel_norm!r}")
        if not self.eps > 0:
            raise bad(f"eps must be > 0, got {self.eps}")
        if self.num_frames is not None and self.num_frames <= 0:
            raise bad(f"num_frames must be > 0 or None, got {self.num_frames}")
        if (self.mean is None) != (self.std is None):
            raise bad("set both mean and std, or neither (None = no normalisation)")
        if self.std is not None and not self.std > 0:
            raise bad(f"std must be > 0, got {self.std}")
        if self.num_samples is not None and self.num_samples <= 0:
            raise bad(f"num_samples must be > 0 or None, got {self.num_samples}")
        if self.waveform_norm not in (None, *_WAVEFORM_NORMS):
            raise bad(f"waveform_norm must be None, 'peak' or 'rms', got {self.waveform_norm!r}")

    @property
    def frame_length(self) -> int:
        """Window length in samples."""
        return _samples(self.sample_rate, self.frame_length_ms)

    @property
    def frame_shift(self) -> int:
        """Hop in samples."""
        return _samples(self.sample_rate, self.frame_shift_ms)


class AudioFeatures(nn.Module):
    """Waveform -> model input, per the config: ``fbank`` / ``logmel`` spectrogram or raw ``waveform``.

    Spectrograms: compute (T, F) features, pad/crop to ``num_frames`` with zeros, normalise, then lay out frequency
    first. The module holds no tensors: filterbanks and windows come from a cache keyed by device and dtype, so it
    works on whatever device the waveform is on, without ``.to()``. Dither (fbank) only applies in training mode.
    """

    def __init__(self, cfg: AudioFeatureConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def extra_repr(self) -> str:
        return f"kind={self.cfg.kind!r}, sample_rate={self.cfg.sample_rate}, num_mel_bins={self.cfg.num_mel_bins}"

    def spectrogram(self, waveform: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Raw (unpadded, unnormalised) features. waveform (S,) or (B, S) -> (T, F) or (B, T, F)."""
        c = self.cfg
        common = {
            "sample_rate": c.sample_rate,
            "num_mel_bins": c.num_mel_bins,
            "frame_length_ms": c.frame_length_ms,
            "frame_shift_ms": c.frame_shift_ms,
            "window": c.window,
            "low_freq": c.low_freq,
            "high_freq": c.high_freq,
            "eps": c.eps,
        }
        if c.kind == "fbank":
            return kaldi_fbank(
                waveform,
                preemphasis=c.preemphasis,
                remove_dc_offset=c.remove_dc_offset,
                dither=c.dither if self.training else 0.0,
                generator=generator,
                **common,
            )
        if c.kind == "logmel":
            return log_mel_spectrogram(waveform, mel_scale=c.mel_scale, mel_norm=c.mel_norm, **common)
        raise ValueError(f"kind {c.kind!r} has no spectrogram")

    def forward(self, waveform: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Compute the model input.

        Args:
            waveform: (S,) or (B, S) float in [-1, 1] at ``cfg.sample_rate``.
            generator: RNG for dither (fbank, training mode, ``cfg.dither > 0``); ignored otherwise.

        Returns:
            spectrogram kinds: (1, F, T) for (S,) input, (B, 1, F, T) for (B, S), ``T = cfg.num_frames`` if set;
            waveform kind: (1, S') or (B, 1, S'), ``S' = cfg.num_samples`` if set.
        """
        c = self.cfg
        x, unbatched = _as_batch(waveform)
        if c.kind == "waveform":
            out = self._waveform(x)
        else:
            feats = self.spectrogram(x, generator)  # (B, T, F)
            if c.num_frames is not None:
                feats = pad_or_crop(feats, c.num_frames, dim=-2)  # AST pads the raw fbank with zeros
            if c.mean is not None and c.std is not None:
                feats = normalize(feats, c.mean, c.std)
            out = feats.transpose(-1, -2).unsqueeze(1)  # (B, 1, F, T)
        return out[0] if unbatched else out

    def _waveform(self, x: Tensor) -> Tensor:  # (B, S) -> (B, 1, S')
        c = self.cfg
        if c.num_samples is not None:
            x = pad_or_crop(x, c.num_samples, dim=-1)
        if c.waveform_norm == "peak":
            x = x / x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8)
        elif c.waveform_norm == "rms":
            x = x / x.square().mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-8)
        return x.unsqueeze(1)


# ---- SpecAugment ---------------------------------------------------------------------------------------------------
def _band_masks(
    batch: int, size: int, param: int, num_masks: int, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """(B, size) bool, the union of ``num_masks`` bands per sample, each ``w ~ U{0..param}``, ``s ~ U{0..size-w}``."""
    mask = torch.zeros(batch, size, dtype=torch.bool, device=device)
    param = min(param, size)
    if param <= 0 or num_masks <= 0 or size == 0:
        return mask
    gen_device = generator.device if generator is not None else torch.device("cpu")
    pos = torch.arange(size, device=device)
    for _ in range(num_masks):
        width = torch.randint(0, param + 1, (batch,), generator=generator, device=gen_device)
        u = torch.rand(batch, generator=generator, device=gen_device, dtype=torch.float64)
        start = (u * (size - width + 1)).floor().long()  # in [0, size - width]
        width, start = width.to(device), start.to(device)
        mask |= (pos >= start[:, None]) & (pos < (start + width)[:, None])
    return mask


def spec_augment_masks(
    batch: int,
    num_freq: int,
    num_time: int,
    *,
    freq_mask_param: int,
    time_mask_param: int,
    num_freq_masks: int = 1,
    num_time_masks: int = 1,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample SpecAugment masks, independently per sample.

    Draw order (fixed, so a generator reproduces it): for each frequency mask, then each time mask:
    ``width = randint(0, param + 1, (B,))`` then ``start = floor(rand(B, float64) * (size - width + 1))``.

    Returns:
        ``(freq_mask (B, F), time_mask (B, T))`` bool, True = masked.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    fmask = _band_masks(batch, num_freq, freq_mask_param, num_freq_masks, generator, dev)
    tmask = _band_masks(batch, num_time, time_mask_param, num_time_masks, generator, dev)
    return fmask, tmask


def spec_augment(
    spec: Tensor,
    *,
    freq_mask_param: int,
    time_mask_param: int,
    num_freq_masks: int = 1,
    num_time_masks: int = 1,
    mask_value: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Frequency and time masking (Park et al. 2019), different masks for each sample of a batch.

    Args:
        spec: (C, F, T) one sample or (B, C, F, T) a batch; masks are shared across C.
        freq_mask_param: maximum width of a frequency band (AST AudioSet: 48); 0 disables.
        time_mask_param: maximum width of a time band (AST AudioSet: 192); 0 disables.
        num_freq_masks: frequency bands per sample (they may overlap).
        num_time_masks: time bands per sample.
        mask_value: value written into masked cells; 0 on a normalised spectrogram = the dataset mean.
        generator: RNG (any device).

    Returns:
        A new tensor of the same shape (the input itself when nothing can be masked).
    """
    if spec.dim() not in (3, 4):
        raise ValueError(f"spec must be (C, F, T) or (B, C, F, T), got shape {tuple(spec.shape)}")
    if min(freq_mask_param, time_mask_param, num_freq_masks, num_time_masks) < 0:
        raise ValueError("mask parameters and counts must be >= 0")
    if (freq_mask_param == 0 or num_freq_masks == 0) and (time_mask_param == 0 or num_time_masks == 0):
        return spec
    x = spec.unsqueeze(0) if spec.dim() == 3 else spec
    b, _, f, t = x.shape
    fmask, tmask = spec_augment_masks(
        b,
        f,
        t,
        freq_mask_param=freq_mask_param,
        time_mask_param=time_mask_param,
        num_freq_masks=num_freq_masks,
        num_time_masks=num_time_masks,
        generator=generator,
        device=x.device,
    )
    mask = fmask[:, None, :, None] | tmask[:, None, None, :]  # (B, 1, F, T)
    out = x.masked_fill(mask, mask_value)
    return out[0] if spec.dim() == 3 else out


class SpecAugment(nn.Module):
    """Module form of :func:`spec_augment`; identity in eval mode (like dropout).

    Put it after :class:`AudioFeatures` (normalised input, ``mask_value=0``). For AST's exact numbers use
    ``mask_value = -mean / (2 * std)`` (AST masks the raw fbank with 0, then normalises).
    """

    def __init__(
        self,
        freq_mask_param: int = 0,
        time_mask_param: int = 0,
        num_freq_masks: int = 1,
        num_time_masks: int = 1,
        mask_value: float = 0.0,
    ) -> None:
        super().__init__()
        if min(freq_mask_param, time_mask_param, num_freq_masks, num_time_masks) < 0:
            raise ValueError("SpecAugment: mask parameters and counts must be >= 0")
        self.freq_mask_param = freq_mask_param
        self.time_mask_param = time_mask_param
        self.num_freq_masks = num_freq_masks
        self.num_time_masks = num_time_masks
        self.mask_value = mask_value

    def extra_repr(self) -> str:
        return (
            f"freq_mask_param={self.freq_mask_param}, time_mask_param={self.time_mask_param}, "
            f"num_freq_masks={self.num_freq_masks}, num_time_masks={self.num_time_masks}, mask_value={self.mask_value}"
        )

    def forward(self, spec: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """spec (C, F, T) or (B, C, F, T) -> same shape."""
        if not self.training:
            return spec
        return spec_augment(
            spec,
            freq_mask_param=self.freq_mask_param,
            time_mask_param=self.time_mask_param,
            num_freq_masks=self.num_freq_masks,
            num_time_masks=self.num_time_masks,
            mask_value=self.mask_value,
            generator=generator,
        )


# ---- dataset statistics --------------------------------------------------------------------------------------------
@dataclass
class RunningMoments:
    """Count, mean and sum of squared deviations (M2), merged exactly in float64 (Chan et al. 1979)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, x: Tensor) -> RunningMoments:
        """Moments of all elements of ``x`` (computed in float64)."""
        x = x.detach().reshape(-1).to(torch.float64)
        n = x.numel()
        if n == 0:
            return cls()
        mean = x.mean()
        return cls(n, float(mean), float((x - mean).square().sum()))

    def merge(self, other: RunningMoments) -> RunningMoments:
        """Combine in place with another set of moments; returns self."""
        if other.count == 0:
            return self
        n = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / n
        self.m2 += other.m2 + delta * delta * self.count * other.count / n
        self.count = n
        return self

    @property
    def std(self) -> float:
        """Population standard deviation (ddof=0)."""
        return math.sqrt(self.m2 / self.count) if self.count else float("nan")


def _raw_feature_config(cfg: AudioFeatureConfig) -> AudioFeatureConfig:
    if cfg.kind == "waveform":
        raise ValueError("normalisation stats are for spectrogram kinds ('fbank', 'logmel'), not 'waveform'")
    return replace(cfg, num_frames=None, mean=None, std=None, dither=0.0)


def compute_stats(waveforms: Iterable[Tensor | np.ndarray], cfg: AudioFeatureConfig) -> tuple[float, float]:
    """Dataset mean and std of the raw features, for ``AudioFeatureConfig(mean=..., std=...)``.

    Uses every value of every real frame (no padding frames, unlike AST's ``get_norm_stats.py``, which averages
    per-batch means and stds of padded inputs), without normalisation or dither; accumulates in float64 one clip at
    a time, so memory does not grow with the dataset.

    Args:
        waveforms: iterable of (S,) float waveforms at ``cfg.sample_rate`` (tensors or numpy arrays).
        cfg: the feature config (kind 'fbank' or 'logmel'); its mean/std/num_frames are ignored.

    Returns:
        ``(mean, std)`` (population std).

    Raises:
        ValueError: no frame at all (empty iterable, or every clip shorter than one window).
    """
    frontend = AudioFeatures(_raw_feature_config(cfg)).eval()
    moments = RunningMoments()
    for w in waveforms:
        x = torch.as_tensor(np.asarray(w, dtype=np.float32)) if isinstance(w, np.ndarray) else w
        moments.merge(RunningMoments.of(frontend.spectrogram(x)))
    if moments.count == 0:
        raise ValueError("compute_stats: no frames (no clips, or all shorter than one window)")
    return moments.mean, moments.std
