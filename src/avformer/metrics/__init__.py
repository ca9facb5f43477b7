"""Metrics: classification (top-k, per-class, mAP, AUC, d'), retrieval (R@K, ranks, class-relevance mAP), and the
test-time pooling of several views of one clip. Plain torch, no model code."""

from __future__ import annotations

from avformer.metrics.aggregate import AggregatedViews, aggregate_by_id, aggregate_views
from avformer.metrics.classification import (
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
from avformer.metrics.retrieval import (
    class_relevance_map,
    paired_retrieval_metrics,
    ranks_of_targets,
    retrieval_report,
    similarity_matrix,
)

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
    "ranks_of_targets",
    "retrieval_report",
    "roc_auc",
    "roc_auc_per_class",
    "similarity_matrix",
    "topk_accuracy",
]
