"""Evaluation: classification metrics, multi-view aggregation, retrieval metrics, report plots.

``metrics``, ``aggregate`` and ``retrieval`` are plain torch. The plot functions live in :mod:`avformer.eval.plots`
and are re-exported lazily, so importing this package does not import matplotlib.
"""

from __future__ import annotations

from typing import Any

from avformer.eval.aggregate import AggregatedViews, aggregate_by_id, aggregate_views
from avformer.eval.metrics import (
    ClassAverage,
    ClassificationMetrics,
    average_precision,
    confusion_matrix,
    d_prime,
    mean_average_precision,
    mean_per_class_accuracy,
    per_class_accuracy,
    roc_auc,
    roc_auc_per_class,
    topk_accuracy,
)
from avformer.eval.retrieval import class_relevance_map, paired_retrieval_metrics, ranks_of_targets, similarity_matrix

_PLOTS = ("plot_confusion_matrix", "plot_modality_comparison", "plot_per_class_accuracy", "plot_training_curves")

__all__ = [
    "AggregatedViews",
    "ClassAverage",
    "ClassificationMetrics",
    "aggregate_by_id",
    "aggregate_views",
    "average_precision",
    "class_relevance_map",
    "confusion_matrix",
    "d_prime",
    "mean_average_precision",
    "mean_per_class_accuracy",
    "paired_retrieval_metrics",
    "per_class_accuracy",
    "plot_confusion_matrix",
    "plot_modality_comparison",
    "plot_per_class_accuracy",
    "plot_training_curves",
    "ranks_of_targets",
    "roc_auc",
    "roc_auc_per_class",
    "similarity_matrix",
    "topk_accuracy",
]


def __getattr__(name: str) -> Any:
    if name in _PLOTS:
        from avformer.eval import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
