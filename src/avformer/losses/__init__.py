"""Objectives, kept outside the models: classification (CE/BCE, mixup) and contrastive (AVC, IMC, NCE, MIL-NCE).

Every loss takes explicit tensors and boolean presence masks; see each module's docstring for papers and choices.
"""

from avformer.losses.classification import MixupOutput, binary_cross_entropy, cross_entropy, mixup
from avformer.losses.contrastive import AVCLoss, IMCLoss, info_nce, mil_nce, supcon_cross, supcon_within

__all__ = [
    "AVCLoss",
    "IMCLoss",
    "MixupOutput",
    "binary_cross_entropy",
    "cross_entropy",
    "info_nce",
    "mil_nce",
    "mixup",
    "supcon_cross",
    "supcon_within",
]
