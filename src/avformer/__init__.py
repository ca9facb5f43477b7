"""avformer: audio-visual transformers (MMT, VATT and relatives) for PyTorch.

The public API is what this module and each subpackage's ``__all__`` export. From this module (imported on first
use, so ``import avformer`` stays light):

    import avformer
    model = avformer.load("runs/demo/mmt_tiny")             # a run folder of `avformer train`, or a checkpoint
    for p in model.predict(["clip.mp4", "song.wav"]):         # per file: fused / audio-only / video-only top-k
        print(p)
    emb = model.embed(["clip.mp4"])                           # encoder features (and common-space embeddings)
    net = avformer.create_model("mat_tiny", num_classes=10)   # a fresh model of a registered variant
    avformer.list_models("mvit")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from avformer._version import __version__

if TYPE_CHECKING:
    from avformer.api import LoadedModel, load
    from avformer.models.registry import create_model, list_models

__all__ = ["LoadedModel", "__version__", "create_model", "list_models", "load"]

_LAZY = {
    "load": "avformer.api",
    "LoadedModel": "avformer.api",
    "create_model": "avformer.models.registry",
    "list_models": "avformer.models.registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'avformer' has no attribute {name!r}")
