"""Objectives, kept outside the models: classification (CE/BCE, mixup), contrastive (AVC, IMC, NCE, MIL-NCE) and
self-distillation (DINO-style head, centring, soft CE, momentum teacher, MMD; used by XKD).

Every loss takes explicit tensors and boolean presence masks; see each module's docstring for papers and choices.
"""

from avformer.losses.classification import MixupOutput, binary_cross_entropy, cross_entropy, mixup
from avformer.losses.contrastive import AVCLoss, IMCLoss, info_nce, mil_nce, supcon_cross, supcon_within
from avformer.losses.distill import (
    Centre,
    ProjectionHead,
    distill_cross_entropy,
    mmd,
    momentum_update_,
    teacher_distribution,
)

__all__ = [
    "AVCLoss",
    "Centre",
    "IMCLoss",
    "MixupOutput",
    "ProjectionHead",
    "binary_cross_entropy",
    "cross_entropy",
    "distill_cross_entropy",
    "info_nce",
    "mil_nce",
    "mixup",
    "mmd",
    "momentum_update_",
    "supcon_cross",
    "supcon_within",
    "teacher_distribution",
]
