"""Audio frontend: the feature config and module (fbank / logmel / raw waveform), SpecAugment, dataset stats.

The spectrogram functions themselves (Kaldi/AST fbank, STFT log-mel, mel filterbanks, pad/crop, normalisation) are
in ``avformer.data.spectrogram``, with their references, parity test and differences from Kaldi / AST; they are
re-exported here.

References:
    - Gong et al., "AST: Audio Spectrogram Transformer", Interspeech 2021, https://arxiv.org/abs/2104.01778.
      ``AudioFeatureConfig``'s defaults are its AudioSet recipe, so published AST weights work.
    - Park et al., "SpecAugment", Interspeech 2019, https://arxiv.org/abs/1904.08779 (frequency and time masks).

Differences from the references:
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

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from avformer.data.spectrogram import (
    _MEL_SCALES,
    _WINDOWS,
    FLOAT32_EPS,
    _as_batch,
    _samples,
    kaldi_fbank,
    log_mel_spectrogram,
    mel_filter_bank,
    normalize,
    num_fbank_frames,
    pad_or_crop,
)

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

_KINDS = ("fbank", "logmel", "waveform")
_WAVEFORM_NORMS = ("peak", "rms")


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
