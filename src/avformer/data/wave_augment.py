"""Waveform augmentations of training audio: speed, pitch, reverberation, noise, band-limiting / EQ, gain.

The options are :class:`~avformer.data.config.WaveAugmentConfig` (``data.wave_augment``); :class:`WaveAugment`
draws one sample's parameters from the sample's generator (:meth:`WaveAugment.draw`) and applies them
(:meth:`WaveAugment.apply`), so the audio is a function of ``(seed, epoch, index)`` whatever the number of DataLoader
workers. Everything is plain torch on one (S,) clip, in the worker that decodes it.

Why not a library: ``torch-audiomentations`` (0.12) and ``audiomentations`` (0.43) both install here, but neither
takes a generator: their parameters come from the global ``torch`` / ``random`` / ``numpy`` states (e.g.
``torch.distributions.Uniform.sample`` and ``random.choices`` in torch-audiomentations' ``AddColoredNoise`` and
``PitchShift``), so a sample's augmentation would depend on which worker drew it and in what order, unless every
worker reseeded three global states per sample. They also bring about 20 packages (librosa, numba, llvmlite,
torchaudio, julius, torch-pitch-shift), neither has speed perturbation and synthetic rooms together, and
torch-audiomentations' pitch shift only offers the ratios that are fast for its algorithm. The transforms below are
short, and each is tested against what it must do (``tests/data/test_wave_augment.py``).

Methods and fidelity:
    - **Speed** (Ko et al., "Audio augmentation for speech recognition", Interspeech 2015; Kaldi's / sox's
      ``speed``): the clip is resampled to ``1 / factor`` of its length and played at the same rate, so tempo and
      pitch both change by the factor. The resampling is by the FFT (``scipy.signal.resample``'s method, on the
      clip zero-padded at its end): ideal band-limiting with a brick-wall cutoff at the lower Nyquist frequency,
      which rings only for content right at that frequency (little in speech); the factor is realised to within
      1 / S of the request.
    - **Pitch** without tempo change: a phase-vocoder time stretch by the pitch ratio (STFT 512 / hop 128, Hann;
      Flanagan & Golden 1966; without Laroche & Dolson's phase locking), then the speed resampler by the same ratio.
      A tone moves by the semitones to within 0.2 %, the clip keeps its length exactly and its events their times to
      within about one STFT window (tested to 20 ms); speech gets the vocoder's usual mild "phasiness" and smeared
      transients (a WSOLA stretch keeps transients better, at more cost), small at the ±2-3 semitones meant here.
    - **Reverberation**: a synthetic room impulse response, Gaussian noise under an exponential envelope whose
      energy falls 60 dB in ``rt60`` (the statistical model of a diffuse late reverberation; no early reflections,
      no frequency-dependent decay), ``rt60`` long, unit energy, convolved by FFT (causal; the tail past the clip's
      end is dropped) and mixed with the dry clip by ``wet``; the mix is scaled back to the clip's RMS, so
      reverberation is not also a gain.
    - **Noise**: white, pink (1/f power) or brown (1/f²) Gaussian noise shaped in the frequency domain, or a random
      stretch of a recording from ``noise_dir`` (decoded with the project's decoder, looped when shorter than the
      clip), scaled to the drawn SNR against the clip's mean power (pauses included, as torch-audiomentations and
      audiomentations do), exact to float precision.
    - **Filter**: zero-phase filtering in the frequency domain by the magnitude response of a Butterworth low- or
      high-pass of ``filter_order`` (-3 dB at the cutoff, then 6 dB per octave per order), or of an RBJ peaking
      biquad ("Audio EQ Cookbook"), on a zero-padded FFT (no circular wrap). Zero phase, unlike a real (causal)
      filter: the magnitude is the point here.
    - **Gain**: a factor ``10 ** (dB / 20)``; no clipping (the features are log-mel or a normalised waveform).

Costs per 1-s clip at 16 kHz on one thread (median, a 2-core machine at load average 5): speed 1.3 ms (factor > 1)
to 3.5 ms (< 1: an FFT size with larger prime factors), pitch 7.6-8.9 ms, reverb 3.0-3.4 ms, pink / brown noise
1.2 ms (white 0.2), low- / high-pass 2.2 ms, peak 3.2 ms, gain 0.01 ms, the draw 0.02 ms; all six 19 ms.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from avformer.data.config import WaveAugmentConfig

__all__ = [
    "WaveAugment",
    "WaveAugmentParams",
    "add_noise",
    "apply_filter",
    "colored_noise",
    "pitch_shift",
    "reverberate",
    "room_impulse_response",
    "speed_perturb",
    "time_stretch",
]

_NOISE_BETA = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectral density ~ 1 / f**beta
_NOISE_EXTENSIONS = {".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac", ".mp4", ".mkv", ".webm", ".mov"}
_NOISE_CACHE_SAMPLES = 16000 * 600  # decoded noise kept per process: about 10 min at 16 kHz (38 MB)


# ---- resampling, speed, pitch ---------------------------------------------------------------------------------------
def _resample(x: Tensor, n_out: int) -> Tensor:
    """Band-limited resampling of ``x`` (S,) to ``n_out`` samples by the FFT (``scipy.signal.resample``'s method).

    The spectrum is cut (fewer samples) or zero-extended (more), so the result is the ideal band-limited
    interpolation of ``x`` taken as periodic; ``x`` is zero-padded at the end first (by at least 1/16 of its length),
    so that its end does not wrap onto its start.
    """
    s = len(x)
    if n_out == s:
        return x.clone()
    pad = max(256, s // 16)
    n_in, n_big = s + pad, round((s + pad) * n_out / s)
    spec = torch.fft.rfft(x, n_in)
    keep = min(spec.shape[0], n_big // 2 + 1)
    out = torch.fft.irfft(spec[:keep], n_big) * (n_big / n_in)
    return out[:n_out]


def speed_perturb(x: Tensor, factor: float) -> Tensor:
    """Play ``x`` (S,) ``factor`` times faster: (round(S / factor),), every frequency times ``factor``."""
    if factor <= 0:
        raise ValueError(f"speed factor must be > 0, got {factor}")
    if factor == 1.0:
        return x.clone()
    return _resample(x, max(1, round(len(x) / factor)))


def time_stretch(x: Tensor, rate: float, n_fft: int = 512, hop_length: int = 128) -> Tensor:
    """Phase-vocoder time stretch of ``x`` (S,): ``rate`` > 1 faster (shorter), pitch kept; (round(S / rate),)."""
    if rate <= 0:
        raise ValueError(f"stretch rate must be > 0, got {rate}")
    n_out = max(1, round(len(x) / rate))
    if rate == 1.0:
        return x.clone()
    window = torch.hann_window(n_fft, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop_length, window=window, center=True, return_complex=True)  # (F, T)
    steps = torch.arange(0, spec.shape[-1], rate, dtype=torch.float64)  # output frames at input frame positions
    spec = torch.nn.functional.pad(spec, (0, 2))  # frames idx + 1 past the end read zeros
    idx = steps.floor().long()
    alpha = (steps - idx).to(x.dtype)
    s0, s1 = spec[:, idx], spec[:, idx + 1]  # (F, M)
    mag = (1 - alpha) * s0.abs() + alpha * s1.abs()
    # the phase advances by each bin's measured frequency per hop: the expected advance plus the wrapped deviation
    expected = 2 * math.pi * hop_length * torch.arange(spec.shape[0], dtype=torch.float64) / n_fft  # (F,)
    dev = s1.angle().double() - s0.angle().double() - expected[:, None]
    dev = dev - 2 * math.pi * torch.round(dev / (2 * math.pi))
    advance = expected[:, None] + dev  # (F, M)
    phase = torch.cat([spec[:, :1].angle().double(), advance[:, :-1]], dim=1).cumsum(dim=1)
    out = torch.polar(mag, phase.to(x.dtype))
    return torch.istft(out, n_fft, hop_length, window=window, center=True, length=n_out)


def pitch_shift(x: Tensor, semitones: float, n_fft: int = 512, hop_length: int = 128) -> Tensor:
    """Shift the pitch of ``x`` (S,) by ``semitones`` at the same tempo; (S,)."""
    if semitones == 0 or len(x) <= n_fft:  # a clip shorter than one STFT window is left as it is
        return x.clone()
    ratio = 2.0 ** (semitones / 12)
    stretched = time_stretch(x, 1.0 / ratio, n_fft, hop_length)  # ratio times longer, same pitch
    return _fit(speed_perturb(stretched, ratio), len(x))  # back to the length, every frequency times ratio


def _fit(x: Tensor, n: int) -> Tensor:
    """Crop the end of ``x`` or zero-pad it there to ``n`` samples."""
    return x[:n] if len(x) >= n else torch.nn.functional.pad(x, (0, n - len(x)))


# ---- reverberation --------------------------------------------------------------------------------------------------
def room_impulse_response(rt60: float, sample_rate: int, generator: torch.Generator | None = None) -> Tensor:
    """A synthetic diffuse-field room impulse response: Gaussian noise whose energy falls 60 dB in ``rt60`` seconds.

    Returns:
        (round(rt60 * sample_rate),) float32 with unit energy.
    """
    if rt60 <= 0:
        raise ValueError(f"rt60 must be > 0, got {rt60}")
    n = max(1, round(rt60 * sample_rate))
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    envelope = 10.0 ** (-3.0 * t / rt60)  # amplitude; energy 10 ** (-6 t / rt60): -60 dB at rt60
    h = torch.randn(n, generator=generator, dtype=torch.float64) * envelope
    return (h / h.norm().clamp_min(1e-12)).float()


def _fft_convolve(x: Tensor, h: Tensor) -> Tensor:
    """Causal linear convolution of ``x`` (S,) with ``h`` (L,), the first S samples."""
    n = len(x) + len(h) - 1
    nfft = 1 << (n - 1).bit_length()
    return torch.fft.irfft(torch.fft.rfft(x, nfft) * torch.fft.rfft(h, nfft), nfft)[: len(x)]


def reverberate(x: Tensor, rir: Tensor, wet: float) -> Tensor:
    """``(1 - wet) * x + wet * (x * rir)``, scaled back to the RMS of ``x``; (S,)."""
    y = (1 - wet) * x + wet * _fft_convolve(x, rir)
    rms_x, rms_y = x.square().mean().sqrt(), y.square().mean().sqrt()
    return y * (rms_x / rms_y) if rms_y > 0 else y


# ---- noise ----------------------------------------------------------------------------------------------------------
def colored_noise(n: int, kind: str, generator: torch.Generator | None = None) -> Tensor:
    """(n,) Gaussian noise of unit power: ``white``, ``pink`` (power ~ 1/f) or ``brown`` (~ 1/f²)."""
    if kind not in _NOISE_BETA:
        raise ValueError(f"noise kind must be one of {sorted(_NOISE_BETA)}, got {kind!r}")
    noise = torch.randn(n, generator=generator)
    beta = _NOISE_BETA[kind]
    if beta > 0:
        spec = torch.fft.rfft(noise)
        f = torch.arange(spec.shape[0], dtype=torch.float32).clamp_min(1.0)
        spec = spec * f ** (-beta / 2)
        spec[0] = 0  # no DC
        noise = torch.fft.irfft(spec, n)
    return noise / noise.square().mean().sqrt().clamp_min(1e-12)


def add_noise(x: Tensor, noise: Tensor, snr_db: float) -> Tensor:
    """``x + g * noise`` with ``g`` such that ``10 log10(P(x) / P(g * noise)) = snr_db`` (P = mean power).

    A silent ``x`` (power 0) has no SNR to keep and is returned as it is.
    """
    p_x, p_n = x.double().square().mean(), noise.double().square().mean()
    if p_x == 0 or p_n == 0:
        return x
    g = torch.sqrt(p_x / (p_n * 10.0 ** (snr_db / 10)))
    return x + (g * noise.double()).to(x.dtype)


# ---- filters --------------------------------------------------------------------------------------------------------
def _peak_response(f: Tensor, sample_rate: int, f0: float, gain_db: float, q: float) -> Tensor:
    """Magnitude response of the RBJ peaking-EQ biquad at the frequencies ``f`` (Hz)."""
    a = 10.0 ** (gain_db / 40)
    w0 = 2 * math.pi * f0 / sample_rate
    alpha = math.sin(w0) / (2 * q)
    b = (1 + alpha * a, -2 * math.cos(w0), 1 - alpha * a)
    den = (1 + alpha / a, -2 * math.cos(w0), 1 - alpha / a)
    z1 = torch.exp(-1j * 2 * math.pi * f.double() / sample_rate)  # z^-1 on the unit circle
    num = b[0] + b[1] * z1 + b[2] * z1 * z1
    return (num / (den[0] + den[1] * z1 + den[2] * z1 * z1)).abs()


def apply_filter(
    x: Tensor,
    kind: str,
    sample_rate: int,
    freq: float,
    *,
    order: int = 4,
    gain_db: float = 0.0,
    q: float = 1.0,
) -> Tensor:
    """Zero-phase ``lowpass`` / ``highpass`` (Butterworth of ``order``, cutoff ``freq``) or ``peak`` (RBJ peaking
    EQ at ``freq`` with ``gain_db`` and ``q``) of ``x`` (S,), by its magnitude response on a zero-padded FFT."""
    n = len(x)
    nfft = 1 << (2 * n - 1).bit_length()
    f = torch.fft.rfftfreq(nfft, 1.0 / sample_rate, dtype=torch.float64)
    if kind == "lowpass":
        h = 1.0 / torch.sqrt(1.0 + (f / freq) ** (2 * order))
    elif kind == "highpass":
        h = 1.0 / torch.sqrt(1.0 + (freq / f.clamp_min(1e-6)) ** (2 * order))
        h[0] = 0.0
    elif kind == "peak":
        h = _peak_response(f, sample_rate, freq, gain_db, q)
    else:
        raise ValueError(f"filter kind must be lowpass, highpass or peak, got {kind!r}")
    return torch.fft.irfft(torch.fft.rfft(x, nfft) * h.to(x.dtype), nfft)[:n]


# ---- the per-sample pipeline ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WaveAugmentParams:
    """One sample's draw; None = that augmentation does not fire. ``seed`` seeds the noise and the room."""

    speed: float | None = None
    semitones: float | None = None
    rt60_s: float | None = None
    wet: float = 0.0
    noise_kind: str | None = None
    snr_db: float = 0.0
    noise_file: int = 0  # index into the sorted files of noise_dir
    noise_offset: float = 0.0  # where the noise stretch starts, as a fraction of the free length
    filter_kind: str | None = None
    filter_hz: float = 0.0
    peak_gain_db: float = 0.0
    peak_q: float = 1.0
    gain_db: float | None = None
    seed: int = 0


def _uniform(u: float, lo_hi: tuple[float, float], log: bool = False) -> float:
    lo, hi = lo_hi
    if log:
        return math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
    return lo + u * (hi - lo)


class WaveAugment:
    """The augmentations of a :class:`WaveAugmentConfig` on one clip: ``aug(wav (S,), generator) -> (S,)``.

    Each call takes a fixed number of draws from the generator (whatever fires), so the draws after it (SpecAugment,
    dither) do not depend on the options. Costs: see the module docstring (all six together: about 19 ms per 1-s
    clip on one thread, in the loader's workers).

    Args:
        cfg: the options.
        sample_rate: of the waveforms.
    """

    _NUM_UNIFORMS = 20

    def __init__(self, cfg: WaveAugmentConfig, sample_rate: int) -> None:
        self.cfg = cfg
        self.sample_rate = sample_rate
        self.noise_files: list[Path] = []
        if "file" in cfg.noise_kinds and cfg.noise_p > 0:
            root = Path(cfg.noise_dir or "")
            if not root.is_dir():
                raise ValueError(f"wave_augment.noise_dir {str(root)!r} is not a folder")
            self.noise_files = sorted(
                p for p in root.rglob("*") if p.suffix.lower() in _NOISE_EXTENSIONS and p.is_file()
            )
            if not self.noise_files:
                raise ValueError(
                    f"wave_augment.noise_dir {str(root)!r} has no audio files ({sorted(_NOISE_EXTENSIONS)})"
                )
        self._noise_cache: OrderedDict[Path, Tensor] = OrderedDict()  # per process (each worker has its own)

    def __repr__(self) -> str:
        return f"WaveAugment({self.cfg}, sample_rate={self.sample_rate})"

    def __call__(self, wav: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.apply(wav, self.draw(generator))

    def draw(self, generator: torch.Generator | None = None) -> WaveAugmentParams:
        """One sample's parameters: ``_NUM_UNIFORMS`` uniforms and one seed from ``generator``, always."""
        c = self.cfg
        u = torch.rand(self._NUM_UNIFORMS, generator=generator, dtype=torch.float64).tolist()
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))

        def pick(options: tuple[str, ...], v: float) -> str:
            return options[min(int(v * len(options)), len(options) - 1)]

        filter_kind = pick(c.filter_kinds, u[13]) if u[12] < c.filter_p else None
        filter_hz = 0.0
        if filter_kind is not None:
            filter_hz = _uniform(u[14], getattr(c, f"{filter_kind}_hz"), log=True)
        return WaveAugmentParams(
            speed=_uniform(u[1], c.speed) if u[0] < c.speed_p else None,
            semitones=_uniform(u[3], c.pitch_semitones) if u[2] < c.pitch_p else None,
            rt60_s=_uniform(u[5], c.reverb_rt60_s) if u[4] < c.reverb_p else None,
            wet=_uniform(u[6], c.reverb_wet),
            noise_kind=pick(c.noise_kinds, u[8]) if u[7] < c.noise_p else None,
            snr_db=_uniform(u[9], c.noise_snr_db),
            noise_file=min(int(u[10] * len(self.noise_files)), max(len(self.noise_files) - 1, 0)),
            noise_offset=u[11],
            filter_kind=filter_kind,
            filter_hz=filter_hz,
            peak_gain_db=_uniform(u[15], c.peak_gain_db),
            peak_q=_uniform(u[16], c.peak_q, log=True),
            gain_db=_uniform(u[18], c.gain_db) if u[17] < c.gain_p else None,
            seed=seed,
        )

    def apply(self, wav: Tensor, p: WaveAugmentParams) -> Tensor:
        """Apply a draw to ``wav`` (S,) float: speed, pitch, reverb, noise, filter, gain. Returns (S,)."""
        n, sr = len(wav), self.sample_rate
        x = wav.float()
        gen = torch.Generator().manual_seed(p.seed)  # the noise and the room's impulse response
        if p.speed is not None:
            x = _fit(speed_perturb(x, p.speed), n)
        if p.semitones is not None:
            x = pitch_shift(x, p.semitones)
        if p.rt60_s is not None:
            x = reverberate(x, room_impulse_response(p.rt60_s, sr, gen), p.wet)
        if p.noise_kind is not None:
            if p.noise_kind == "file":
                noise = self._file_noise(p.noise_file, p.noise_offset, n)
            else:
                noise = colored_noise(n, p.noise_kind, gen)
            x = add_noise(x, noise, p.snr_db)
        if p.filter_kind is not None:
            x = apply_filter(
                x, p.filter_kind, sr, p.filter_hz, order=self.cfg.filter_order, gain_db=p.peak_gain_db, q=p.peak_q
            )
        if p.gain_db is not None:
            x = x * 10.0 ** (p.gain_db / 20)
        return x.to(wav.dtype)

    def _file_noise(self, index: int, offset: float, n: int) -> Tensor:
        """``n`` samples of noise file ``index`` from ``offset`` (a fraction of the free length); looped if short."""
        path = self.noise_files[index]
        wav = self._noise_cache.get(path)
        if wav is None:
            from avformer.data.media import MediaError, decode_clip  # the decoder only where noise files are used

            try:
                clip = decode_clip(path, video=False, audio=True, sample_rate=self.sample_rate)
            except MediaError as e:  # the sample is skipped with this reason: name the noise file, not the clip
                raise MediaError(path, f"wave_augment noise file {path}: {e.reason}") from e
            if not clip.has_audio or len(clip.audio) == 0:
                raise MediaError(path, f"wave_augment noise file {path}: no audio")
            wav = torch.from_numpy(clip.audio.copy())
            self._noise_cache[path] = wav
            while sum(len(v) for v in self._noise_cache.values()) > _NOISE_CACHE_SAMPLES and len(self._noise_cache) > 1:
                self._noise_cache.popitem(last=False)
        if len(wav) >= n:
            start = min(int(offset * (len(wav) - n + 1)), len(wav) - n)
            return wav[start : start + n]
        start = int(offset * len(wav))
        return torch.roll(wav, -start).repeat(math.ceil(n / len(wav)))[:n]
