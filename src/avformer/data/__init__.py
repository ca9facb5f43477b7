"""Media decoding, audio features, video transforms, manifests, datasets and the synthetic demo data."""

from __future__ import annotations

from avformer.data.audio import AudioFeatureConfig, AudioFeatures, SpecAugment, compute_stats
from avformer.data.dataset import AVDataset, DataConfig, LoadStats, collate, make_loader, set_epoch
from avformer.data.manifest import Manifest, ManifestError, ManifestRow, read_manifest, write_manifest
from avformer.data.media import Clip, MediaError, ProbeInfo, StreamInfo, decode_clip, load_audio, media_duration, probe
from avformer.data.synth import CLASS_NAMES, SynthConfig, render_clip, write_dataset
from avformer.data.video import VideoTransform, VideoTransformConfig

__all__ = [
    "CLASS_NAMES",
    "AVDataset",
    "AudioFeatureConfig",
    "AudioFeatures",
    "Clip",
    "DataConfig",
    "LoadStats",
    "Manifest",
    "ManifestError",
    "ManifestRow",
    "MediaError",
    "ProbeInfo",
    "SpecAugment",
    "StreamInfo",
    "SynthConfig",
    "VideoTransform",
    "VideoTransformConfig",
    "collate",
    "compute_stats",
    "decode_clip",
    "load_audio",
    "make_loader",
    "media_duration",
    "probe",
    "read_manifest",
    "render_clip",
    "set_epoch",
    "write_dataset",
    "write_manifest",
]
