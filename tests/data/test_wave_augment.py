"""Waveform augmentations (avformer.data.wave_augment): each does what its name says, measured on tones and noise,
the clip keeps its length, and a training dataset's audio is a function of (seed, epoch, index) across workers."""

from __future__ import annotations

import dataclasses
import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from avformer.data.audio import AudioFeatureConfig
from avformer.data.config import DataConfig, WaveAugmentConfig
from avformer.data.dataset import AVDataset, make_loader
from avformer.data.manifest import Manifest, read_manifest
from avformer.data.synth import SynthConfig, write_dataset
from avformer.data.wave_augment import (
    WaveAugment,
    WaveAugmentParams,
    add_noise,
    apply_filter,
    colored_noise,
    pitch_shift,
    reverberate,
    room_impulse_response,
    speed_perturb,
    time_stretch,
)

SR = 16000


def _tone(freq: float, seconds: float = 1.0, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(round(seconds * SR), dtype=torch.float64) / SR
    return (amp * torch.sin(2 * math.pi * freq * t)).float()


def _burst(freq: float, start: float, end: float, seconds: float = 1.0) -> torch.Tensor:
    """A tone between ``start`` and ``end`` seconds, silence elsewhere (10-ms raised-cosine edges)."""
    x = _tone(freq, seconds)
    t = torch.arange(len(x)) / SR
    ramp = 0.01
    env = ((t - start) / ramp).clamp(0, 1) * ((end - t) / ramp).clamp(0, 1)
    return x * (0.5 - 0.5 * torch.cos(math.pi * env))


def _peak_hz(x: torch.Tensor) -> float:
    """Frequency of the largest spectral peak (Hann window, 8x zero-padded FFT: 0.125-Hz bins for 1 s)."""
    n = len(x)
    spec = torch.fft.rfft(x.double() * torch.hann_window(n, dtype=torch.float64), 8 * n).abs()
    return int(spec.argmax()) * SR / (8 * n)


def _active_span(x: torch.Tensor, frame: int = 160) -> tuple[float, float]:
    """First and last time (s) where the 10-ms frame RMS is within 20 dB of the loudest frame."""
    rms = x[: len(x) // frame * frame].reshape(-1, frame).square().mean(-1).sqrt()
    on = (rms > rms.max() * 0.1).nonzero().flatten()
    return float(on[0]) * frame / SR, float(on[-1] + 1) * frame / SR


def _band_db(x: torch.Tensor, lo: float, hi: float) -> float:
    spec = torch.fft.rfft(x.double()).abs().square()
    f = torch.fft.rfftfreq(len(x), 1 / SR)
    return 10 * math.log10(float(spec[(f >= lo) & (f < hi)].sum()))


def _only(**kwargs: object) -> WaveAugment:
    """A WaveAugment with the named options (e.g. ``speed_p=1.0``) and everything else off."""
    return WaveAugment(WaveAugmentConfig(**kwargs), SR)  # type: ignore[arg-type]


# ---- speed ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("factor", [0.9, 0.95, 1.1])
def test_speed_changes_duration_and_pitch_by_the_factor(factor: float) -> None:
    y = speed_perturb(_tone(440.0), factor)
    assert len(y) == round(SR / factor)  # duration / factor
    assert _peak_hz(y) == pytest.approx(440.0 * factor, rel=2e-3)  # pitch * factor
    # through the dataset's pipeline: a burst's span scales by 1 / factor, and the clip keeps its length
    x = _burst(440.0, 0.2, 0.6)
    out = _only(speed_p=1.0, speed=(factor, factor))(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    start, end = _active_span(out)
    assert start == pytest.approx(0.2 / factor, abs=0.011) and end == pytest.approx(0.6 / factor, abs=0.011)
    assert _peak_hz(out) == pytest.approx(440.0 * factor, rel=2e-3)


# ---- pitch ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("semitones", [-2.0, 0.5, 2.0])
def test_pitch_shift_moves_the_tone_and_keeps_the_duration(semitones: float) -> None:
    x = _tone(440.0)
    y = pitch_shift(x, semitones)
    assert y.shape == x.shape
    assert _peak_hz(y) == pytest.approx(440.0 * 2 ** (semitones / 12), rel=2e-3)
    b = _burst(440.0, 0.2, 0.6)
    start, end = _active_span(pitch_shift(b, semitones))
    assert start == pytest.approx(0.2, abs=0.02) and end == pytest.approx(0.6, abs=0.02)  # tempo kept


def test_time_stretch_changes_length_not_pitch() -> None:
    y = time_stretch(_tone(440.0), 0.8)
    assert len(y) == round(SR / 0.8)
    assert _peak_hz(y) == pytest.approx(440.0, rel=2e-3)


# ---- gain and noise ------------------------------------------------------------------------------------------------
def test_gain_in_db_is_exact() -> None:
    x = _tone(300.0)
    aug = _only(gain_p=1.0, gain_db=(-20.0, 20.0))
    p = aug.draw(torch.Generator().manual_seed(4))
    assert p.gain_db is not None and -20 <= p.gain_db <= 20
    y = aug.apply(x, p)
    measured = 20 * math.log10(float(y.double().norm() / x.double().norm()))
    assert measured == pytest.approx(p.gain_db, abs=1e-4)


@pytest.mark.parametrize("kind", ["white", "pink", "brown"])
@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 12.5, 30.0])
def test_noise_snr_is_the_request(kind: str, snr_db: float) -> None:
    gen = torch.Generator().manual_seed(1)
    x = _burst(300.0, 0.1, 0.7)  # pauses included in the signal power, as documented
    y = add_noise(x, colored_noise(len(x), kind, gen), snr_db)
    measured = 10 * math.log10(float(x.double().square().mean() / (y - x).double().square().mean()))
    assert measured == pytest.approx(snr_db, abs=0.5)


def test_noise_snr_through_the_pipeline() -> None:
    aug = _only(noise_p=1.0, noise_snr_db=(0.0, 20.0))
    x = _tone(300.0)
    for seed in range(5):
        p = aug.draw(torch.Generator().manual_seed(seed))
        y = aug.apply(x, p)
        measured = 10 * math.log10(float(x.double().square().mean() / (y - x).double().square().mean()))
        assert measured == pytest.approx(p.snr_db, abs=0.5)


def test_noise_colours_have_their_slopes() -> None:
    gen = torch.Generator().manual_seed(2)
    tilt = {}  # power in 100-200 Hz over power in 3.2-6.4 kHz (per octave: 5 octaves apart)
    for kind in ("white", "pink", "brown"):
        n = colored_noise(4 * SR, kind, gen)
        assert float(n.square().mean()) == pytest.approx(1.0, rel=1e-4)
        # per Hz: white flat, pink 1/f (-3 dB per octave), brown 1/f^2 (-6 dB per octave)
        tilt[kind] = (_band_db(n, 100, 200) - 10 * math.log10(100)) - (_band_db(n, 3200, 6400) - 10 * math.log10(3200))
    assert tilt["white"] == pytest.approx(0.0, abs=1.0)
    assert tilt["pink"] == pytest.approx(15.05, abs=1.5)  # 5 octaves x 3.01 dB
    assert tilt["brown"] == pytest.approx(30.1, abs=1.5)


def _write_wav(path: Path, x: np.ndarray, sample_rate: int = SR) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def test_noise_from_a_folder_is_decoded_looped_and_mixed_at_the_snr(tmp_path: Path) -> None:
    noise_dir = tmp_path / "noise"
    (noise_dir / "sub").mkdir(parents=True)
    _write_wav(noise_dir / "sub" / "hum.wav", _tone(1000.0, seconds=0.3).numpy())  # shorter than the clip: looped
    (noise_dir / "readme.txt").write_text("not audio")
    aug = _only(noise_p=1.0, noise_kinds=("file",), noise_dir=str(noise_dir), noise_snr_db=(6.0, 6.0))
    assert [p.name for p in aug.noise_files] == ["hum.wav"]
    x = _tone(300.0)
    y = aug(x, torch.Generator().manual_seed(0))
    added = y - x
    assert _peak_hz(added) == pytest.approx(1000.0, rel=2e-3)
    assert float(added[SR // 2 :].abs().max()) > 0.05  # looped over the whole clip, not only its first 0.3 s
    measured = 10 * math.log10(float(x.double().square().mean() / added.double().square().mean()))
    assert measured == pytest.approx(6.0, abs=0.5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        _only(noise_p=1.0, noise_kinds=("file",), noise_dir=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="not a folder"):
        _only(noise_p=1.0, noise_kinds=("file",), noise_dir=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="noise_dir"):
        WaveAugmentConfig(noise_kinds=("white", "file"))


# ---- reverberation and filters -------------------------------------------------------------------------------------
@pytest.mark.parametrize("rt60", [0.2, 0.5, 0.8])
def test_reverb_rir_decays_with_the_requested_rt60(rt60: float) -> None:
    h = room_impulse_response(rt60, SR, torch.Generator().manual_seed(3)).double()
    assert float(h.square().sum()) == pytest.approx(1.0, rel=1e-4)
    # Schroeder backward integration, T20: a line fitted to the decay between -5 and -25 dB, extrapolated to -60 dB
    edc = torch.flip(torch.cumsum(torch.flip(h.square(), [0]), 0), [0])
    edc_db = 10 * torch.log10(edc / edc[0])
    i5, i25 = int((edc_db <= -5).nonzero()[0]), int((edc_db <= -25).nonzero()[0])
    t = torch.arange(i5, i25 + 1, dtype=torch.float64) / SR
    slope = float(torch.linalg.lstsq(torch.stack([t, torch.ones_like(t)], 1), edc_db[i5 : i25 + 1, None]).solution[0])
    assert -60.0 / slope == pytest.approx(rt60, rel=0.1)


def test_reverb_smears_in_time_and_keeps_level_and_length() -> None:
    x = _burst(500.0, 0.2, 0.3)
    y = reverberate(x, room_impulse_response(0.5, SR, torch.Generator().manual_seed(0)), wet=0.8)
    assert y.shape == x.shape
    assert float(y.square().mean()) == pytest.approx(float(x.square().mean()), rel=1e-4)
    assert float(y[round(0.45 * SR) :].abs().max()) > 0.01 > float(x[round(0.45 * SR) :].abs().max())  # the tail


def test_band_limit_attenuates_above_the_cutoff() -> None:
    x = _tone(500.0) + _tone(4000.0)

    def gain_db(y: torch.Tensor, freq: float) -> float:
        return _band_db(y, freq - 2, freq + 2) - _band_db(x, freq - 2, freq + 2)

    low = apply_filter(x, "lowpass", SR, 1000.0, order=4)
    assert gain_db(low, 500.0) > -0.5 and gain_db(low, 4000.0) < -40  # 4th order: -48 dB two octaves up
    high = apply_filter(x, "highpass", SR, 2000.0, order=4)
    assert gain_db(high, 500.0) < -40 and gain_db(high, 4000.0) > -0.5
    peak = apply_filter(x, "peak", SR, 500.0, gain_db=9.0, q=1.0)
    assert gain_db(peak, 500.0) == pytest.approx(9.0, abs=0.1) and abs(gain_db(peak, 4000.0)) < 0.5
    # through the pipeline, on white noise: little left above the drawn cutoff
    aug = _only(filter_p=1.0, filter_kinds=("lowpass",), lowpass_hz=(1000.0, 2000.0))
    noise = colored_noise(SR, "white", torch.Generator().manual_seed(5))
    p = aug.draw(torch.Generator().manual_seed(5))
    y = aug.apply(noise, p)
    assert p.filter_kind == "lowpass" and 1000.0 <= p.filter_hz <= 2000.0
    assert _band_db(y, 4 * p.filter_hz, 8000) - _band_db(noise, 4 * p.filter_hz, 8000) < -40


# ---- the pipeline --------------------------------------------------------------------------------------------------
ALL_ON = WaveAugmentConfig(
    speed_p=1.0, pitch_p=1.0, reverb_p=1.0, noise_p=1.0, filter_p=1.0, gain_p=1.0, filter_kinds=("peak",)
)
ONE_EACH = ["speed_p", "pitch_p", "reverb_p", "noise_p", "filter_p", "gain_p"]


@pytest.mark.parametrize("option", [*ONE_EACH, "all"])
@pytest.mark.parametrize("n", [SR, 12345])
def test_every_augmentation_keeps_the_clip_length(option: str, n: int) -> None:
    cfg = ALL_ON if option == "all" else WaveAugmentConfig(**{option: 1.0})  # type: ignore[arg-type]
    x = colored_noise(n, "pink", torch.Generator().manual_seed(0)) * 0.1
    for seed in range(3):
        y = WaveAugment(cfg, SR)(x, torch.Generator().manual_seed(seed))
        assert y.shape == x.shape and y.dtype == torch.float32 and bool(torch.isfinite(y).all())
        assert not torch.equal(y, x)


def test_draws_are_seeded_and_take_a_fixed_number_of_draws() -> None:
    a, b = WaveAugment(ALL_ON, SR), WaveAugment(WaveAugmentConfig(gain_p=0.5), SR)
    x = _tone(300.0)
    assert torch.equal(a(x, torch.Generator().manual_seed(9)), a(x, torch.Generator().manual_seed(9)))
    assert not torch.equal(a(x, torch.Generator().manual_seed(9)), a(x, torch.Generator().manual_seed(10)))
    ga, gb = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a.draw(ga), b.draw(gb)
    assert torch.equal(ga.get_state(), gb.get_state())  # later draws (SpecAugment, dither) do not depend on options
    off = WaveAugment(WaveAugmentConfig(), SR).draw(torch.Generator())  # every probability 0: nothing fires
    assert dataclasses.replace(off, wet=0.0, snr_db=0.0, noise_offset=0.0, peak_gain_db=0.0, peak_q=1.0, seed=0) == (
        WaveAugmentParams()
    )


def test_config_validation() -> None:
    assert not WaveAugmentConfig().enabled and WaveAugmentConfig(gain_p=0.1).enabled
    assert not DataConfig().wave_augment.enabled  # off by default: existing recipes are unchanged
    for bad in ({"speed_p": 1.5}, {"speed": (1.1, 0.9)}, {"speed": (0.0, 1.0)}, {"reverb_wet": (0.5, 1.5)}):
        with pytest.raises(ValueError, match="wave_augment"):
            WaveAugmentConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="noise_kinds"):
        WaveAugmentConfig(noise_kinds=("purple",))
    with pytest.raises(ValueError, match="Nyquist"):
        DataConfig(wave_augment=WaveAugmentConfig(filter_p=1.0, lowpass_hz=(1000.0, 9000.0)))
    DataConfig(wave_augment=WaveAugmentConfig(filter_p=1.0, filter_kinds=("peak",), lowpass_hz=(1000.0, 9000.0)))


# ---- in the dataset ------------------------------------------------------------------------------------------------
CFG = DataConfig(
    modalities=("audio",),
    clip_seconds=1.0,
    audio=AudioFeatureConfig(num_mel_bins=32, num_frames=100),
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, Path]:
    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, SynthConfig(num_clips=6, seconds=1.0, size=32, fps=8), workers=1)
    noise_dir = out / "noise"
    noise_dir.mkdir()
    _write_wav(noise_dir / "a.wav", 0.3 * colored_noise(SR // 2, "brown", torch.Generator().manual_seed(0)).numpy())
    _write_wav(noise_dir / "b.wav", _tone(700.0, seconds=2.0, amp=0.2).numpy())
    return read_manifest(out / "manifest.csv"), noise_dir


def test_same_audio_whatever_the_worker_count(tiny: tuple[Manifest, Path]) -> None:
    manifest, noise_dir = tiny
    wave_cfg = dataclasses.replace(ALL_ON, noise_kinds=("pink", "file"), noise_dir=str(noise_dir), speed_p=0.5)
    cfg = dataclasses.replace(CFG, wave_augment=wave_cfg)
    ds = AVDataset(manifest, cfg, train=True, seed=3)
    one = list(make_loader(ds, batch_size=2, shuffle=True, seed=7))
    two = list(make_loader(ds, batch_size=2, shuffle=True, seed=7, num_workers=2))
    assert [b["id"] for b in one] == [b["id"] for b in two] and sum(b["batch_size"] for b in one) == len(manifest)
    for b1, b2 in zip(one, two, strict=True):
        assert b1["audio"].shape == (2, 1, 32, 100)
        assert torch.equal(b1["audio"], b2["audio"])
    plain = AVDataset(manifest, CFG, train=True, seed=3)
    assert not torch.equal(plain[0]["audio"], ds[0]["audio"])  # the augmentation is applied
    ds.set_epoch(1)
    other_epoch = ds[0]["audio"]
    ds.set_epoch(0)
    assert not torch.equal(other_epoch, ds[0]["audio"])  # a new draw each epoch


def test_evaluation_is_never_augmented(tiny: tuple[Manifest, Path]) -> None:
    manifest, _ = tiny
    cfg = dataclasses.replace(CFG, wave_augment=ALL_ON)
    assert AVDataset(manifest, cfg, train=False).transform.wave_augment is None
    assert torch.equal(AVDataset(manifest, cfg, train=False)[1]["audio"], AVDataset(manifest, CFG)[1]["audio"])
    assert AVDataset(manifest, CFG, train=True).transform.wave_augment is None  # off by default
