"""Media decoding, audio features, video transforms, manifests, datasets and the synthetic demo data.

The names below are imported on first use, so that importing one light submodule (``avformer.data.config``, which
the experiment config reads) does not import the decoder (PyAV) or the dataset.
"""

from __future__ import annotations

import importlib
from typing import Any

from avformer.data import esc50  # noqa: F401  (registers the esc50 manifest format; light: no decoder)

_EXPORTS = {
    "AVDataset": "avformer.data.dataset",
    "AudioFeatureConfig": "avformer.data.audio",
    "AudioFeatures": "avformer.data.audio",
    "CLASS_NAMES": "avformer.data.synth",
    "Clip": "avformer.data.media",
    "DataConfig": "avformer.data.config",
    "LoadStats": "avformer.data.dataset",
    "Manifest": "avformer.data.manifest",
    "ManifestError": "avformer.data.manifest",
    "ManifestRow": "avformer.data.manifest",
    "MediaError": "avformer.data.media",
    "ProbeInfo": "avformer.data.media",
    "SpecAugment": "avformer.data.audio",
    "SpecAugmentConfig": "avformer.data.config",
    "StreamInfo": "avformer.data.media",
    "SynthConfig": "avformer.data.synth",
    "VideoTransform": "avformer.data.video",
    "VideoTransformConfig": "avformer.data.video",
    "collate": "avformer.data.dataset",
    "compute_stats": "avformer.data.audio",
    "decode_clip": "avformer.data.media",
    "load_audio": "avformer.data.media",
    "make_loader": "avformer.data.dataset",
    "media_duration": "avformer.data.media",
    "probe": "avformer.data.media",
    "read_manifest": "avformer.data.manifest",
    "render_clip": "avformer.data.synth",
    "set_epoch": "avformer.data.dataset",
    "write_dataset": "avformer.data.synth",
    "write_manifest": "avformer.data.manifest",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
