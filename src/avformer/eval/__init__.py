"""Evaluation of trained runs: ``avformer eval`` reports, ``predict``, representation probes, and the report plots.

The metrics themselves are in :mod:`avformer.metrics`. The plot functions live in :mod:`avformer.eval.plots` and are
re-exported lazily, so importing this package does not import matplotlib.
"""

from __future__ import annotations

from typing import Any

_PLOTS = ("plot_confusion_matrix", "plot_modality_comparison", "plot_per_class_accuracy", "plot_training_curves")

__all__ = list(_PLOTS)


def __getattr__(name: str) -> Any:
    if name in _PLOTS:
        from avformer.eval import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
