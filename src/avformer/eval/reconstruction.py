"""Reconstruction pictures of a masked autoencoder: input, masked input and reconstruction, per modality.

:func:`write_reconstructions` takes a task that can ``reconstruct`` a batch (the masked pretraining tasks of
:mod:`avformer.tasks.masked`), the first clips of a loader, and writes into the run folder

* ``reconstruction_audio.png``: one row per clip, three log-mel panels (input, masked input, reconstruction; mel
  bins up, time to the right), one colour scale per clip (the input's range), masked regions blank (grey);
* ``reconstruction_video.png``: three rows per clip (input, masked input, reconstruction), one column per frame;
  each clip is shown with its input's range mapped to [0, 1] (the frames are normalised model inputs), masked
  regions grey.

The reconstruction shows the visible patches as they were and the predicted ones in the masked places (MAE's
visualisation). With per-patch normalised targets (``norm_pix``) the model predicts each patch's shape only, not its
level: the prediction is then put back at the true patch's mean and spread (as MAE's visualisation does), so the
brightness layout of the masked area comes from the input, not from the model; the title says so.
Figures use the Agg canvas directly, as :mod:`avformer.eval.plots` does, at a fixed pixel size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from avformer.tasks.masked import Reconstruction

__all__ = ["plot_audio_reconstruction", "plot_video_reconstruction", "write_reconstructions"]

_GREY = "#b0b0b0"
_PANELS = ("input", "masked input", "reconstruction")


def _figure(figsize: tuple[float, float], dpi: int) -> Figure:
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_png: str | Path) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=fig.dpi)
    return out


def _caption(rec: Reconstruction) -> str:
    text = f"{rec.mask_ratio:.0%} of the tokens masked"
    return text + ("; predictions shown at the true patch's mean and spread" if rec.norm_pix else "")


def plot_audio_reconstruction(rec: Reconstruction, out_png: str | Path, *, title: str = "", dpi: int = 100) -> Path:
    """Spectrogram panels of ``rec`` (input (B, 1, F, T)); see the module docstring. Returns the path."""
    n = rec.input.shape[0]
    fig = _figure((12.0, 2.2 * n + 0.6), dpi)
    axes = fig.subplots(n, 3, squeeze=False)
    for i in range(n):
        x = rec.input[i, 0].float().numpy()
        lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
        for j, img in enumerate((rec.input, rec.masked, rec.reconstruction)):
            ax = axes[i, j]
            ax.set_facecolor(_GREY)
            data = np.ma.masked_invalid(img[i, 0].float().numpy())
            ax.imshow(data, origin="lower", aspect="auto", cmap="magma", vmin=lo, vmax=hi, interpolation="nearest")
            if i == 0:
                ax.set_title(_PANELS[j], fontsize=9)
            if j == 0:
                ax.set_ylabel(f"clip {i + 1}\nmel bin", fontsize=8)
            if i == n - 1:
                ax.set_xlabel("frame (10 ms)", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle(f"{title}: audio reconstruction ({_caption(rec)})".lstrip(": "), fontsize=10)
    return _save(fig, out_png)


def _to_rgb(frames: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(C, T, H, W) -> (T, H, W, 3) in [0, 1]; NaN stays NaN (drawn grey)."""
    x = (frames - lo) / max(hi - lo, 1e-6)
    x = np.clip(x, 0.0, 1.0, where=~np.isnan(x), out=x.copy())
    x = np.moveaxis(x, 0, -1)
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x[..., :3]


def plot_video_reconstruction(rec: Reconstruction, out_png: str | Path, *, title: str = "", dpi: int = 100) -> Path:
    """Frame panels of ``rec`` (input (B, C, T, H, W)); see the module docstring. Returns the path."""
    n, _, t = rec.input.shape[:3]
    fig = _figure((1.3 * t + 1.2, 1.35 * 3 * n + 0.6), dpi)
    axes = fig.subplots(3 * n, t, squeeze=False)
    for i in range(n):
        x = rec.input[i].float().numpy()
        lo, hi = float(x.min()), float(x.max())
        for j, img in enumerate((rec.input, rec.masked, rec.reconstruction)):
            rgb = _to_rgb(img[i].float().numpy(), lo, hi)  # (T, H, W, 3)
            for k in range(t):
                ax = axes[3 * i + j, k]
                frame = rgb[k].copy()
                frame[np.isnan(frame)] = 0.69  # masked tubelets: grey
                ax.imshow(frame, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if k == 0:
                    ax.set_ylabel(f"clip {i + 1}\n{_PANELS[j]}", fontsize=7)
                if i == 0 and j == 0:
                    ax.set_title(f"frame {k + 1}", fontsize=8)
    fig.suptitle(f"{title}: video reconstruction ({_caption(rec)})".lstrip(": "), fontsize=10)
    return _save(fig, out_png)


def _to_device(batch: dict[str, Any], device: torch.device, n: int) -> dict[str, Any]:
    return {k: v[:n].to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def write_reconstructions(
    task: Any, loader: Any, out_dir: str | Path, *, num_clips: int = 4, title: str = "", seed: int = 0
) -> list[Path]:
    """Reconstruction PNGs of the first ``num_clips`` clips of ``loader`` into ``out_dir`` (see the module
    docstring); ``[]`` when ``task`` cannot ``reconstruct`` or has nothing to draw (MAViL stage 2 predicts
    features, not patches). The model's train/eval mode is restored afterwards."""
    reconstruct = getattr(task, "reconstruct", None)
    if not callable(reconstruct):
        return []
    batch = next(iter(loader), None)
    if batch is None or not batch.get("batch_size", 1):
        return []
    model = task.model
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        recs = reconstruct(_to_device(batch, device, num_clips), seed=seed)
    finally:
        model.train(was_training)
    out = Path(out_dir)
    paths = []
    if "audio" in recs:
        paths.append(plot_audio_reconstruction(recs["audio"], out / "reconstruction_audio.png", title=title))
    if "video" in recs:
        paths.append(plot_video_reconstruction(recs["video"], out / "reconstruction_video.png", title=title))
    return paths
