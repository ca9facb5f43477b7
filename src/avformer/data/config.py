"""How a manifest row becomes a sample: the data section of an experiment config.

Kept apart from :mod:`avformer.data.dataset` so that reading a config never imports the decoder (PyAV).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from avformer.data.audio import AudioFeatureConfig
from avformer.data.video import VideoTransformConfig

__all__ = ["DataConfig", "SpecAugmentConfig", "ViewConfig"]


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

    def __post_init__(self) -> None:
        if self.num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {self.num_views}")
        if self.view_gap not in VIEW_GAPS:
            raise ValueError(f"view_gap must be one of {VIEW_GAPS}, got {self.view_gap!r}")
        if self.view_gap != "random" and (self.same_window or self.audio_offset != 0 or self.max_audio_offset > 0):
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
        return self.audio_offset != 0 or self.max_audio_offset > 0

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

    @property
    def window_seconds(self) -> float:
        """Seconds of media one sample covers."""
        if self.clip_seconds is not None:
            return self.clip_seconds
        return self.video.num_frames / self.video.fps
