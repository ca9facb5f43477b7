"""The Python API for a trained model: load a run, predict files, embed files.

    import avformer
    model = avformer.load("runs/demo/mmt_tiny")      # a run folder (best.pt, else last.pt) or a checkpoint file
    model.classes                                     # class names in logit order
    results = model.predict(["a.mp4", "b.wav"])       # one FilePrediction per file, in order; never raises for a file
    print(results[0])                                 # a.mp4: dog 0.912, rain 0.050 | audio-only: ... | video-only: ...
    results[0].top, results[0].views["audio"], results[0].error
    emb = model.embed(["a.mp4", "b.wav"])             # Embeddings: encoder features per file that loads

``predict`` goes through :class:`avformer.eval.predict.FilePredictor`, the code path of ``avformer predict``: the
same decoding, windows, transforms and pooling, so a file gets the same numbers from both. A file that cannot be
used (missing, not media, no stream the model reads) gets ``error`` set (one line) and empty ``top``; the others
are predicted. ``embed`` goes through :func:`avformer.eval.representations.extract_embeddings`, the code path of
``avformer embed``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from avformer.config import ExperimentConfig
from avformer.data.manifest import Manifest, ManifestRow
from avformer.eval.predict import FilePrediction, FilePredictor
from avformer.eval.representations import Embeddings, extract_embeddings
from avformer.models.loading import LoadedRun, load_run
from avformer.utils.device import resolve_device

__all__ = ["LoadedModel", "load"]


@dataclass
class LoadedModel:
    """A trained model ready for files (see the module docstring); made by :func:`load`."""

    run: LoadedRun
    device: torch.device

    @property
    def classes(self) -> list[str]:
        """Class names in logit order (empty for a self-supervised run)."""
        return list(self.run.classes)

    @property
    def config(self) -> ExperimentConfig:
        """The run's resolved config (model, data settings, training)."""
        return self.run.cfg

    @property
    def model(self) -> nn.Module:
        """The ``nn.Module`` itself, in eval mode on :attr:`device`."""
        return self.run.model

    @property
    def checkpoint(self) -> Path:
        return self.run.checkpoint

    def predict(
        self,
        paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
        *,
        topk: int = 5,
        clips: int = 3,
        per_modality: bool = True,
        multilabel: bool = False,
        timeout_s: float | None = None,
    ) -> list[FilePrediction]:
        """Top-k labels per file, in the order given.

        Args:
            paths: video or audio files (one path is taken as a list of one).
            topk: labels per view.
            clips: windows per file, uniformly spaced over it, probabilities averaged (1 = the centre window).
            per_modality: an audio-visual model also gives its audio-only and video-only views
                (``FilePrediction.views``; 3 forward passes instead of 1).
            multilabel: sigmoid scores (a multi-label run, e.g. AudioSet), as ``avformer predict --multilabel``.
            timeout_s: decoding budget per file (None: the run's ``data.decode_timeout_s`` per window).

        Raises:
            ValueError: a run without classes (self-supervised: use :meth:`embed`), or ``topk`` / ``clips`` < 1.
        """
        if not self.run.classes:
            raise ValueError(f"{self.run.checkpoint}: this run has no classes (self-supervised); use embed()")
        items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
        predictor = FilePredictor(
            self.run,
            num_clips=clips,
            topk=topk,
            multilabel=multilabel,
            device=self.device,
            timeout_s=timeout_s,
            per_modality=per_modality,
        )
        return [predictor.predict(p) for p in items]

    def embed(
        self, paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str], *, batch_size: int = 16
    ) -> Embeddings:
        """Encoder features (``video_pooled`` / ``audio_pooled``) and, for models that have them, common-space
        embeddings (``video_va``, ``audio_va``, ``video_vt``) of the centre window of each file that loads;
        ``Embeddings.paths`` / ``index`` say which files those are (a file that fails is absent, with a warning
        in the log)."""
        items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
        rows = [ManifestRow(os.path.abspath(os.fspath(p)), id=os.fspath(p)) for p in items]
        manifest = Manifest(rows, [], False, "avformer.api")
        data = self.run.cfg.data
        return extract_embeddings(self.run.model, manifest, data, batch_size=batch_size, device=self.device)


def load(path: str | os.PathLike[str], device: str = "auto", *, checkpoint: str = "best") -> LoadedModel:
    """Load a run folder of ``avformer train`` / ``pretrain`` (``best.pt``, else ``last.pt``; ``checkpoint="last"``
    the other way round) or a checkpoint file, on ``device`` (``auto``: CUDA when available, else the CPU).

    Raises:
        FileNotFoundError: no checkpoint there.
        avformer.utils.checkpoint.CheckpointError: an unreadable or refused checkpoint (weights only, never code).
    """
    run = load_run(Path(path), prefer=checkpoint, require_classes=False)
    dev = resolve_device(device)
    run.model.to(dev).eval()
    return LoadedModel(run, dev)
