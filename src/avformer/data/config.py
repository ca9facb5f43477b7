"""How a manifest row becomes a sample: the data section of an experiment config.

Kept apart from :mod:`avformer.data.dataset` so that reading a config never imports the decoder (PyAV).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from avformer.data.audio import AudioFeatureConfig
from avformer.data.video import VideoTransformConfig

__all__ = ["DataConfig", "SpecAugmentConfig", "ViewConfig", "WaveAugmentConfig"]


@dataclass(frozen=True)
class SpecAugmentConfig:
    """SpecAugment (Park et al. 2019) on training spectrograms; the defaults (widths 0) switch it off.

    Applied per sample by a training :class:`AVDataset`, after :class:`~avformer.data.audio.AudioFeatures` (so on the
    normalised spectrogram, where ``mask_value = 0`` is the dataset mean), with the sample's own generator: the masks
    are a function of ``(seed, epoch, index)`` whatever the number of workers. Never applied at evaluation, to
    waveforms, or to clips without audio. AST's AudioSet recipe masks up to 48 mel bins and 192 frames (of 1024).
    The fields are :func:`~avformer.data.audio.spec_augment`'s options, passed to it as they are.
    """

    freq_mask_param: int = 0  # maximum width of a frequency band, in mel bins; 0 = no frequency masking
    time_mask_param: int = 0  # maximum width of a time band, in frames; 0 = no time masking
    num_freq_masks: int = 1
    num_time_masks: int = 1
    mask_value: float = 0.0

    def __post_init__(self) -> None:
        if min(self.freq_mask_param, self.time_mask_param, self.num_freq_masks, self.num_time_masks) < 0:
            raise ValueError("spec_augment mask widths and counts must be >= 0")

    @property
    def enabled(self) -> bool:
        return (self.freq_mask_param > 0 and self.num_freq_masks > 0) or (
            self.time_mask_param > 0 and self.num_time_masks > 0
        )


NOISE_KINDS = ("white", "pink", "brown", "file")
FILTER_KINDS = ("lowpass", "highpass", "peak")


@dataclass(frozen=True)
class WaveAugmentConfig:
    """Waveform augmentations of training audio, before the features; every probability 0 (off) by default.

    Applied per sample by a training :class:`AVDataset` (and :class:`~avformer.data.shards.ShardDataset`) to the
    decoded window, before :class:`~avformer.data.audio.AudioFeatures`, in this order: speed, pitch, reverberation,
    noise, filter, gain (the voice, then the room, then the microphone and its channel). Each fires with its own
    probability ``*_p`` and draws its value uniformly from its range (frequencies log-uniformly). The draws come from
    the sample's generator, so they are a function of ``(seed, epoch, index)`` whatever the number of workers.
    The clip keeps its length (a sped-up clip is zero-padded at the end, a slowed one cropped). Never applied at
    evaluation or to clips without audio. The functions and their fidelity: :mod:`avformer.data.wave_augment`.
    """

    speed_p: float = 0.0  # speed perturbation (tempo and pitch by the same factor, as Kaldi's / sox's `speed`)
    speed: tuple[float, float] = (0.9, 1.1)  # factor: > 1 faster and higher
    pitch_p: float = 0.0  # pitch shift without tempo change (phase-vocoder stretch, then resampling)
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)
    reverb_p: float = 0.0  # a synthetic room: exponentially decaying noise as the impulse response
    reverb_rt60_s: tuple[float, float] = (0.1, 0.8)  # time for the reverberant energy to fall by 60 dB
    reverb_wet: tuple[float, float] = (0.2, 0.8)  # share of the reverberant signal in the mix (1 = no direct sound)
    noise_p: float = 0.0  # additive noise at a random SNR (relative to the clip's mean power, pauses included)
    noise_snr_db: tuple[float, float] = (5.0, 30.0)
    noise_kinds: tuple[str, ...] = ("white", "pink", "brown")  # one drawn per noisy clip; "file": from noise_dir
    noise_dir: str | None = None  # a folder of audio files (any format the decoder reads), searched recursively
    filter_p: float = 0.0  # band-limiting / EQ: one of filter_kinds
    filter_kinds: tuple[str, ...] = FILTER_KINDS
    lowpass_hz: tuple[float, float] = (1000.0, 6000.0)  # cutoff of a Butterworth low-pass
    highpass_hz: tuple[float, float] = (100.0, 600.0)  # cutoff of a Butterworth high-pass
    filter_order: int = 4  # Butterworth order of the low- and high-pass (6 dB per octave per order)
    peak_hz: tuple[float, float] = (200.0, 4000.0)  # centre of a peaking EQ band (RBJ biquad)
    peak_gain_db: tuple[float, float] = (-12.0, 12.0)
    peak_q: tuple[float, float] = (0.5, 2.0)
    gain_p: float = 0.0  # a random gain (no clipping)
    gain_db: tuple[float, float] = (-6.0, 6.0)

    def __post_init__(self) -> None:
        def bad(msg: str) -> ValueError:
            return ValueError(f"wave_augment: {msg}")

        for name in ("speed_p", "pitch_p", "reverb_p", "noise_p", "filter_p", "gain_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(f"{name} must be in [0, 1], got {getattr(self, name)}")
        ranges = ("speed", "pitch_semitones", "reverb_rt60_s", "reverb_wet", "noise_snr_db", "lowpass_hz")
        for name in (*ranges, "highpass_hz", "peak_hz", "peak_gain_db", "peak_q", "gain_db"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise bad(f"{name} must be (low, high) with low <= high, got {(lo, hi)}")
        positive = ("speed", "reverb_rt60_s", "lowpass_hz", "highpass_hz", "peak_hz", "peak_q")
        for name in positive:
            if getattr(self, name)[0] <= 0:
                raise bad(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.reverb_wet[0] <= self.reverb_wet[1] <= 1.0:
            raise bad(f"reverb_wet must lie in [0, 1], got {self.reverb_wet}")
        if not self.noise_kinds or set(self.noise_kinds) - set(NOISE_KINDS):
            raise bad(f"noise_kinds must be a non-empty subset of {NOISE_KINDS}, got {self.noise_kinds}")
        if "file" in self.noise_kinds and not self.noise_dir:
            raise bad("noise_kinds has 'file': set noise_dir (a folder of noise recordings)")
        if not self.filter_kinds or set(self.filter_kinds) - set(FILTER_KINDS):
            raise bad(f"filter_kinds must be a non-empty subset of {FILTER_KINDS}, got {self.filter_kinds}")
        if self.filter_order < 1:
            raise bad(f"filter_order must be >= 1, got {self.filter_order}")

    @property
    def enabled(self) -> bool:
        return max(self.speed_p, self.pitch_p, self.reverb_p, self.noise_p, self.filter_p, self.gain_p) > 0


VIEW_GAPS = ("random", "overlapped", "adjacent", "far")


@dataclass(frozen=True)
class ViewConfig:
    """Several views of one clip, and audio shifted against the video (defaults: one view, audio in sync).

    For self-supervised and correspondence tasks (contrastive views, audio-visual synchronisation). With
    ``num_views > 1`` a training sample holds that many views stacked on a leading view axis (``video`` (V, C, T, H,
    W), ``audio`` (V, ...)), each with its own temporal window (unless ``same_window``) and its own augmentation
    draw. Evaluation keeps one view (its test views are ``num_test_clips`` x ``num_test_crops``).

    An audio offset moves the audio window against the video window by ``audio_offset`` seconds (positive: the
    audio comes later), or by a random offset uniform in ``±max_audio_offset`` with ``|offset| >= min_audio_offset``
    (drawn per view from the sample's generator: deterministic for a given seed, epoch and row). The shifted audio is
    decoded from the file, never padded with silence: both windows are placed inside the row (or file), and a file
    too short for the offset, without audio, or whose audio ends before the shifted window is skipped with that
    reason. Samples then carry ``audio_offset`` (seconds, per view).

    ``audio_offset_grid`` (synchronisation as offset classification, Chen et al. 2021): each view's offset is one of
    these values (seconds, ascending), drawn uniformly from the sample's generator, and samples also carry its index
    ``audio_offset_class`` (int64). The window of the ``grid_anchor`` stream is placed where *every* grid offset fits
    (uniform there, drawn from the sample's generator in training and in evaluation alike: a centred anchor would
    make the moved window's place in the file a function of the offset on every val clip), the other one is moved
    by the offset, so where the anchor's window lies in the file says nothing about the offset; a row shorter than
    the window plus the grid's span is skipped. The moved stream's place in the file does depend on the offset, the
    less so the more room the anchor has (rows much longer than window + span): a model that can tell where in the
    file a window lies (an encoder's frame-type pattern, content tied to the clip's clock) can read the offset from
    that alone when there is little room (docs/sync.md). Anchor the stream whose content is tied to the clip's
    clock. ``audio`` (the default) suits clips cut around their sound: on AV-Digits (speech placed inside 1-s clips)
    a ``video`` anchor let a model read the offset from the audio window alone (58 % against 11 % chance,
    docs/sync.md). ``grid_margin`` keeps both windows that far from the row's ends: the first
    and last frames of an encoding differ from the rest (an I-frame, the encoder's flush), and a moved window that
    reaches an end tells which offset moved it there.

    ``view_gap`` says where the windows of the views lie relative to each other (CrissCross's temporal sampling,
    Sarkar & Etemad 2023, official code ``video_db.py``), each window of the clip length ``L`` inside the row's span:
    ``random`` (each view's window drawn independently: they may overlap), ``overlapped`` (consecutive views start
    ``L / 2`` apart: 50 % overlap), ``adjacent`` (back to back), ``far`` (consecutive views start half the span apart;
    CrissCross's "far apart"). A row too short for the views (``overlapped`` needs ``1.5 L`` for two views,
    ``adjacent`` ``2 L``, ``far`` a span of at least ``2 L``) is skipped with that reason. The gap options other
    than ``random`` keep the audio in sync with the video (no offsets) and exclude ``same_window`` (CrissCross's
    "same timestamp").
    """

    num_views: int = 1
    same_window: bool = False  # the views share one temporal window (they differ by augmentation only)
    view_gap: str = "random"  # random | overlapped | adjacent | far: where the views' windows lie (see above)
    audio_offset: float = 0.0  # a fixed shift (s) of the audio against the video
    max_audio_offset: float = 0.0  # > 0: a random shift uniform in [-max, max] instead (needs audio_offset = 0)
    min_audio_offset: float = 0.0  # with a random shift: its magnitude is at least this (out-of-sync negatives)
    audio_offset_grid: tuple[float, ...] = ()  # offset classes (s, ascending): one drawn per view (see above)
    grid_anchor: str = "audio"  # with a grid: the stream whose window is placed independently of the offset
    grid_margin: float = 0.0  # with a grid: seconds at each end of the row that no window reads (see above)

    def __post_init__(self) -> None:
        grid = tuple(float(x) for x in self.audio_offset_grid)  # YAML gives a list (of ints too)
        object.__setattr__(self, "audio_offset_grid", grid)
        if grid:
            ascending = all(a < b for a, b in itertools.pairwise(grid))
            if len(grid) < 2 or not all(math.isfinite(x) for x in grid) or not ascending:
                raise ValueError(f"audio_offset_grid must hold >= 2 finite offsets in ascending order, got {grid}")
            if self.audio_offset != 0 or self.max_audio_offset > 0 or self.min_audio_offset > 0:
                raise ValueError("set either audio_offset_grid or audio_offset / max_audio_offset, not both")
        if self.grid_anchor not in ("audio", "video"):
            raise ValueError(f"grid_anchor must be 'audio' or 'video', got {self.grid_anchor!r}")
        if self.grid_margin < 0 or (self.grid_margin > 0 and not grid):
            raise ValueError(f"grid_margin must be >= 0 and needs audio_offset_grid, got {self.grid_margin}")
        if self.num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {self.num_views}")
        if self.view_gap not in VIEW_GAPS:
            raise ValueError(f"view_gap must be one of {VIEW_GAPS}, got {self.view_gap!r}")
        if self.view_gap != "random" and (self.same_window or self.shifted):
            raise ValueError(f"view_gap={self.view_gap!r} takes neither same_window nor audio offsets")
        if self.max_audio_offset < 0 or self.min_audio_offset < 0:
            raise ValueError("max_audio_offset and min_audio_offset must be >= 0")
        if self.max_audio_offset > 0 and self.audio_offset != 0:
            raise ValueError("set either audio_offset (fixed) or max_audio_offset (random), not both")
        if self.min_audio_offset > self.max_audio_offset:
            raise ValueError(
                f"min_audio_offset {self.min_audio_offset} exceeds max_audio_offset {self.max_audio_offset}"
            )

    @property
    def shifted(self) -> bool:
        """Whether the audio is moved against the video."""
        return self.audio_offset != 0 or self.max_audio_offset > 0 or bool(self.audio_offset_grid)

    @property
    def active(self) -> bool:
        """Whether samples differ from the default one aligned view."""
        return self.num_views > 1 or self.shifted


@dataclass(frozen=True)
class DataConfig:
    """How a manifest row becomes a sample.

    Attributes:
        modalities: which of ``video`` and ``audio`` to load.
        clip_seconds: length of the window read from each file; None reads the whole row window / file.
            The video clip is ``video.num_frames`` frames at ``video.fps``; audio covers the same window.
        video: frame sampling and spatial transforms.
        audio: audio features (log-mel / waveform).
        spec_augment: frequency / time masking of training spectrograms (off by default).
        wave_augment: speed, pitch, reverberation, noise, filter and gain of training waveforms, before the
            features (see :class:`WaveAugmentConfig`; off by default).
        num_test_clips: windows per file at evaluation (uniformly spaced); 1 = the centre window.
        num_test_crops: spatial crops per window at evaluation, spread along the long side of the frame (3 = left /
            centre / right, see :func:`avformer.data.video.spatial_crops`); 1 = the centre crop. With video, a test
            sample has ``num_test_clips * num_test_crops`` views (clip-major; the crops of a window share its
            audio), stacked on a leading view axis when there are several.
        decode_timeout_s: a file that takes longer than this to decode is skipped (bounded time per file).
        views: several views per training clip and audio offsets (see :class:`ViewConfig`; off by default).
    """

    modalities: tuple[str, ...] = ("video", "audio")
    clip_seconds: float | None = None
    video: VideoTransformConfig = field(default_factory=VideoTransformConfig)
    audio: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    num_test_clips: int = 1
    num_test_crops: int = 1
    decode_timeout_s: float = 60.0
    views: ViewConfig = field(default_factory=ViewConfig)
    wave_augment: WaveAugmentConfig = field(default_factory=WaveAugmentConfig)

    def __post_init__(self) -> None:
        bad = set(self.modalities) - {"video", "audio"}
        if bad or not self.modalities:
            raise ValueError(f"modalities must be a non-empty subset of ('video', 'audio'), got {self.modalities}")
        if self.clip_seconds is not None and self.clip_seconds <= 0:
            raise ValueError(f"clip_seconds must be positive, got {self.clip_seconds}")
        if self.num_test_clips < 1:
            raise ValueError(f"num_test_clips must be >= 1, got {self.num_test_clips}")
        if self.num_test_crops < 1:
            raise ValueError(f"num_test_crops must be >= 1, got {self.num_test_crops}")
        if self.views.shifted and "audio" not in self.modalities:
            raise ValueError("views: an audio offset needs audio in data.modalities")
        w, nyquist = self.wave_augment, self.audio.sample_rate / 2
        for kind in w.filter_kinds if w.filter_p > 0 else ():
            name = f"{kind}_hz"
            if getattr(w, name)[1] >= nyquist:
                raise ValueError(f"wave_augment.{name} must stay below the Nyquist frequency {nyquist:g} Hz")

    @property
    def window_seconds(self) -> float:
        """Seconds of media one sample covers."""
        if self.clip_seconds is not None:
            return self.clip_seconds
        return self.video.num_frames / self.video.fps
