"""Log-mel spectrogram functions: Kaldi/AST filterbanks, plain STFT log-mel, mel filterbanks, pad/crop, normalisation.

References:
    - Gong et al., "AST: Audio Spectrogram Transformer", Interspeech 2021, https://arxiv.org/abs/2104.01778.
      Its recipe (``torchaudio.compliance.kaldi.fbank`` with ``htk_compat=True, use_energy=False,
      window_type='hanning', num_mel_bins=128, dither=0``, zero-pad/crop to 1024 frames, then
      ``(x - mean) / (2 * std)`` with the AudioSet mean/std) is the default here, so published AST weights work.
    - Kaldi ``compute-fbank-feats`` (``feat/feature-window.cc``, ``feat/mel-computations.cc``): frames with
      ``snip_edges=true``, dither, per-frame DC removal, pre-emphasis, window, FFT padded to a power of two, power
      spectrum, triangular filters that are linear on the mel scale ``1127 ln(1 + f / 700)``, ``log(max(x, eps))``.

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

Layouts: these functions return Kaldi's ``(..., T, F)`` (frames × mel bins). ``avformer.data.audio`` builds the
model input from them (``AudioFeatureConfig``, ``AudioFeatures``) and re-exports the public names.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

__all__ = [
    "FLOAT32_EPS",
    "kaldi_fbank",
    "log_mel_spectrogram",
    "mel_filter_bank",
    "normalize",
    "num_fbank_frames",
    "pad_or_crop",
]

FLOAT32_EPS = float(torch.finfo(torch.float32).eps)  # Kaldi's log floor (std::numeric_limits<float>::epsilon())

_WINDOWS = ("hanning", "hann", "povey", "hamming", "rectangular")
_MEL_SCALES = ("htk", "kaldi", "slaney")


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


def _as_compute_batch(waveform: Tensor) -> tuple[Tensor, bool, torch.dtype]:
    """(S,) or (B, S) -> ((B, S) in float32, or float64 for float64 input; was_unbatched; the input dtype)."""
    x, unbatched = _as_batch(waveform)
    return x.to(_compute_dtype(x.dtype)), unbatched, x.dtype


def _frame_sizes(sample_rate: int, frame_length_ms: float, frame_shift_ms: float) -> tuple[int, int, int]:
    """Window length and hop in samples, and the FFT size (the next power of two of the window length)."""
    length, shift = _samples(sample_rate, frame_length_ms), _samples(sample_rate, frame_shift_ms)
    if length < 2 or shift < 1:
        raise ValueError(f"frame length {length} / shift {shift} samples too small")
    return length, shift, _next_pow2(length)


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
    x, unbatched, out_dtype = _as_compute_batch(waveform)
    dtype = x.dtype
    frame_length, frame_shift, n_fft = _frame_sizes(sample_rate, frame_length_ms, frame_shift_ms)
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
    x, unbatched, out_dtype = _as_compute_batch(waveform)
    dtype = x.dtype
    win_length, hop, n_fft = _frame_sizes(sample_rate, frame_length_ms, frame_shift_ms)
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
