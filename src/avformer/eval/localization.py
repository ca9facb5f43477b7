"""Sound-source localisation with a trained ``av_correspondence`` run: heatmaps, the pointing game, 2×2 mosaics.

What is measured (``avformer localize --eval``, :func:`evaluate_localization`):

* **Correspondence**: each val clip with its own audio or another clip's (the task's deterministic pairs, chance
  0.5), accuracy of each trained head (``ave_acc``, ``avol_acc``).
* **Two heatmaps** of a clip with its own audio, one map over the frame each (the ``aligned`` head compares the
  whole window's time courses, so there is no per-frame map): ``map``, AVOL's logits over its places (the paper's
  heatmap; 8×8 places for a 32-px frame and a stride-4 stem), and ``gradient``, ``|∂ logit / ∂ pixel|`` of AVOL's
  clip logit summed over colour and frames (:func:`gradient_heatmap`): a saliency map at the input's pixels, inside
  the receptive field of the winning place.
* **Pointing game** on clips with an events sidecar (``avformer synth --events``), for each heatmap: it is upsampled
  (bilinear, each place at the centre of its receptive field: :func:`upsample`) to the model's input frame (the
  gradient heatmap already is at that size), and its peak pixel is tested
  against the sounding object's box **at the moments it sounds**: the burst frames (event onsets) the model saw. A
  clip scores the fraction of those frames on which the peak lies inside the box (pixel centre inside
  ``[x0, x1) × [y0, y1)``), and ``pointing`` is the mean over clips (``pointing`` for AVOL's map,
  ``pointing_gradient``). The objects drift while the clip has one heatmap, so the same game on **every** frame the
  model saw is stricter (``pointing_all_frames``, ``pointing_gradient_all_frames``): it also asks the object to stay
  where it sounded. Chance is what a peak placed without looking scores: the box's area as a fraction of the frame,
  averaged the same way (``pointing_chance``, ``pointing_chance_all_frames``). Clips whose window holds no burst are
  left out. Boxes are mapped from the
  written frame to the model's input the way evaluation transforms the frames (:class:`ViewGeometry`: the
  decoder's short-side resize, the transform's resize and centre crop); a box cut by the crop keeps its visible
  part. Frames are matched by time: model frame ``k`` shows the source frame on screen at its timestamp.
* **Mosaics** (``--mosaic``, any val set, e.g. AV-Digits): four val clips tiled 2×2 (each quadrant one clip's
  frames, the mosaic twice the model's input size), scored with the audio of each of the four in turn; a trial is
  right when the heatmap's peak falls in the quadrant of the clip whose audio it is (chance 0.25; ``mosaic_acc``
  for AVOL's map, ``mosaic_acc_gradient``). Groups are
  consecutive val clips; a trailing group of fewer than four is left out.

:func:`load_localizer` rebuilds a run's model *and* its task heads (which ``load_run`` drops) from the checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from avformer.config import ExperimentConfig, from_dict
from avformer.data.dataset import WindowTransform, collate
from avformer.data.manifest import read_manifest
from avformer.data.media import MediaError, decode_clip, media_duration
from avformer.data.synth_events import events_path, read_events
from avformer.data.video import VideoTransformConfig, uniform_clip_windows
from avformer.layers.conv_embed import Places
from avformer.models.loading import build_model
from avformer.models.localization import AVOLOutput
from avformer.tasks.correspondence import CorrespondenceTask, correspondence_pairs
from avformer.tasks.registry import TaskData, get_task
from avformer.utils.checkpoint import find_checkpoint, load_checkpoint
from avformer.utils.errors import UsageError

__all__ = [
    "HEATMAPS",
    "LocalizedClip",
    "Localizer",
    "ViewGeometry",
    "evaluate_localization",
    "gradient_heatmap",
    "load_localizer",
    "mosaic",
    "peak",
    "pointing",
    "pointing_game",
    "quadrant",
    "upsample",
]


HEATMAPS = ("map", "gradient")


# ---- geometry and metrics (pure) ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ViewGeometry:
    """Where a source frame's pixels land in the model's input frame: ``x_view = x_src · scale_x - left``.

    Attributes:
        scale_y, scale_x: source -> resized frame.
        top, left: the centre crop's offset in the resized frame.
        size: the model's input side (square).
    """

    scale_y: float
    scale_x: float
    top: int
    left: int
    size: int

    @classmethod
    def of(cls, src_hw: tuple[int, int], decoded_hw: tuple[int, int], cfg: VideoTransformConfig) -> ViewGeometry:
        """The evaluation transform's geometry for a source of ``src_hw`` decoded at ``decoded_hw`` (the decoder's
        short-side resize), then resized (:func:`~avformer.data.video.short_side_resize`'s rule) and centre-cropped
        (:func:`~avformer.data.video.center_crop`'s rule) to ``cfg.size``."""
        (sh, sw), (h, w) = src_hw, decoded_hw
        s = cfg.short_side
        rh, rw = (s, max(s, int(w * s / h))) if h <= w else (max(s, int(h * s / w)), s)
        return cls(rh / sh, rw / sw, (rh - cfg.size) // 2, (rw - cfg.size) // 2, cfg.size)

    def box(self, box: Sequence[float]) -> tuple[float, float, float, float]:
        """A source box ``[x0, y0, x1, y1)`` in the model's frame, cut to it (empty boxes have x0 == x1)."""
        x0, y0, x1, y1 = (float(v) for v in box)
        clip = lambda v: min(max(v, 0.0), float(self.size))  # noqa: E731
        return (
            clip(x0 * self.scale_x - self.left),
            clip(y0 * self.scale_y - self.top),
            clip(x1 * self.scale_x - self.left),
            clip(y1 * self.scale_y - self.top),
        )


def _interpolation(n_out: int, n_in: int, stride: float, first: float) -> Tensor:
    """(n_out, n_in) weights of linear interpolation from places centred at ``first + stride · i`` to the pixel
    centres ``0.5, 1.5, ...``; beyond the outer places the edge value holds."""
    u = ((torch.arange(n_out) + 0.5 - first) / stride).clamp(0, n_in - 1)  # each pixel in place units
    i0 = u.floor().long().clamp(max=max(n_in - 2, 0))
    frac = u - i0
    w = torch.zeros(n_out, n_in)
    rows = torch.arange(n_out)
    w[rows, i0] = 1 - frac
    if n_in > 1:
        w[rows, i0 + 1] += frac
    return w


def upsample(heatmap: Tensor, size: tuple[int, int], places: Places | None = None) -> Tensor:
    """(h, w) heatmap -> (H, W), bilinear, each value at its place's centre on the frame (``places``, e.g.
    :meth:`~avformer.tasks.correspondence.CorrespondenceTask.video_places`). None spreads the places evenly over the
    frame, as ``F.interpolate(..., align_corners=False)``; a strided conv stem's places sit elsewhere (a stride-4
    stem of padded 3×3 convolutions centres place ``i`` on pixel ``4i``, not ``4i + 1.5``)."""
    h, w = heatmap.shape
    p = Places.even((h, w), size) if places is None else places
    rows = _interpolation(size[0], h, p.stride[0], p.first[0])
    cols = _interpolation(size[1], w, p.stride[1], p.first[1])
    return rows @ heatmap.float().cpu() @ cols.T


def peak(heatmap: Tensor, size: tuple[int, int], places: Places | None = None) -> tuple[int, int]:
    """``(row, col)`` of the highest pixel of ``heatmap`` upsampled to ``size`` (the first one on ties)."""
    up = upsample(heatmap, size, places)
    k = int(up.flatten().argmax())
    return divmod(k, size[1])


def pointing(
    heatmap: Tensor, boxes: Sequence[Sequence[float]], size: int, places: Places | None = None
) -> tuple[float, float]:
    """The pointing game of one clip: ``(hit fraction, chance)``.

    Args:
        heatmap: (h, w) map over the model's frame.
        boxes: the sounding object's box on each frame the model saw, in the model's frame (``[x0, y0, x1, y1)``).
        size: the model's input side.
        places: where the heatmap's places sit on the frame (:func:`upsample`).

    Returns:
        The fraction of frames whose box holds the peak pixel's centre, and the mean fraction of the frame the box
        covers (what a peak placed without looking scores).
    """
    if not boxes:
        raise ValueError("pointing needs at least one frame's box")
    py, px = peak(heatmap, (size, size), places)
    cy, cx = py + 0.5, px + 0.5
    hits = [b[0] <= cx < b[2] and b[1] <= cy < b[3] for b in boxes]
    areas = [max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0) / (size * size) for b in boxes]
    return sum(hits) / len(hits), sum(areas) / len(areas)


def mosaic(videos: Tensor) -> Tensor:
    """Four clips (4, C, T, H, W) tiled 2×2 into one (C, T, 2H, 2W): quadrants 0 top-left, 1 top-right,
    2 bottom-left, 3 bottom-right."""
    if videos.ndim != 5 or videos.shape[0] != 4:
        raise ValueError(f"mosaic takes 4 clips (4, C, T, H, W), got shape {tuple(videos.shape)}")
    top = torch.cat([videos[0], videos[1]], dim=-1)  # (C, T, H, 2W)
    bottom = torch.cat([videos[2], videos[3]], dim=-1)
    return torch.cat([top, bottom], dim=-2)  # (C, T, 2H, 2W)


def quadrant(heatmap: Tensor, size: tuple[int, int], places: Places | None = None) -> int:
    """Quadrant (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) of the peak of ``heatmap`` upsampled to
    ``size`` (the mosaic's frame)."""
    py, px = peak(heatmap, size, places)
    return 2 * int(py >= size[0] / 2) + int(px >= size[1] / 2)


def gradient_heatmap(task: CorrespondenceTask, video: Tensor, audio: Tensor) -> tuple[Tensor, AVOLOutput]:
    """The gradient heatmap of each clip with its own audio, and AVOL's output (detached).

    The heatmap is ``|∂ logit / ∂ video|`` summed over colour and time, (B, H, W) at the model's input resolution:
    which pixels would move the clip's correspondence logit most. AVOL's logit is the maximum over places, so the
    gradient lives in the receptive field of the winning place and picks out the pixels in it that carry the match
    (a saliency map, Simonyan et al. 2014, of AVOL's score).
    """
    video = video.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = task.avol(video, audio)
        (grad,) = torch.autograd.grad(out.logit.sum(), video)
    detached = AVOLOutput(out.logit_map.detach(), out.logit.detach(), out.similarity.detach())
    return grad.abs().sum((1, 2)), detached


# ---- loading ----------------------------------------------------------------------------------------------------
def load_localizer(
    path: str | Path, *, prefer: str = "best", use_ema: bool = True
) -> tuple[ExperimentConfig, CorrespondenceTask, Path]:
    """A trained ``av_correspondence`` run with its heads: ``(config, task, checkpoint)``, model in eval mode on the
    CPU.

    Raises:
        FileNotFoundError, avformer.utils.checkpoint.CheckpointError: no readable checkpoint.
        UsageError: the run is not an ``av_correspondence`` run, or its weights do not fit.
    """
    ckpt_path = find_checkpoint(path, prefer)
    ckpt = load_checkpoint(ckpt_path)
    cfg = from_dict(ckpt["config"])
    if cfg.task is None or cfg.task.name != "av_correspondence":
        name = cfg.task.name if cfg.task is not None else "(none)"
        raise UsageError(f"{ckpt_path}: task {name!r} is not av_correspondence: it has no localisation head")
    entry = get_task(cfg.task.name)
    model = build_model(cfg.model)
    task = entry.build(model, entry.parse_options(cfg.task.options), TaskData.of(cfg.data))
    assert isinstance(task, CorrespondenceTask)
    ema = ckpt.get("ema")
    state = ema["shadow"] if use_ema and ema else ckpt["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise UsageError(
            f"{ckpt_path}: the weights do not fit the model of its config: {str(e).splitlines()[0]}"
        ) from e
    model.eval()
    return cfg, task, ckpt_path


# ---- one file ---------------------------------------------------------------------------------------------------
@dataclass
class LocalizedClip:
    """One window of a file as the model saw it, and its heatmap.

    Attributes:
        path: the file.
        window: (start, end) seconds.
        frames: (T, H, W, 3) uint8 decoded frames at the run's short side (before the crop), for display.
        timestamps: (T,) seconds of those frames.
        audio: (S,) float32 mono waveform of the window.
        sample_rate: of ``audio``.
        geometry: the decoded frames -> model frame map (source = the decoded frames).
        heatmap: (h, w) AVOL logits over the model frame's places (None until scored).
        gradient: (H, W) gradient heatmap at the model frame's pixels (:func:`gradient_heatmap`; None until scored).
        logit: the clip's correspondence logit (None until scored).
        sample: the model's inputs (``video``, ``audio``, flags).
        places: where the places of ``heatmap`` sit on the model frame (the video stem's receptive-field centres,
            :meth:`~avformer.tasks.correspondence.CorrespondenceTask.video_places`); None spreads them evenly.
    """

    path: str
    window: tuple[float, float]
    frames: np.ndarray
    timestamps: np.ndarray
    audio: np.ndarray
    sample_rate: int
    geometry: ViewGeometry
    sample: dict[str, Any]
    heatmap: Tensor | None = None
    gradient: Tensor | None = None
    logit: float | None = None
    notes: list[str] = field(default_factory=list)
    places: Places | None = None

    def map_of(self, kind: str) -> Tensor:
        """The scored heatmap of ``kind``: ``map`` (AVOL's places) or ``gradient`` (pixels)."""
        m = {"map": self.heatmap, "gradient": self.gradient}[kind]
        if m is None:
            raise ValueError("score the clip first (Localizer.score)")
        return m

    def places_of(self, kind: str) -> Places | None:
        """Where the pixels of the heatmap of ``kind`` sit: :attr:`places` for ``map``, None (its own pixels, evenly)
        for ``gradient``."""
        return self.places if kind == "map" else None

    @property
    def probability(self) -> float:
        """Sigmoid of the correspondence logit: how sure the model is that sound and picture belong together."""
        assert self.logit is not None
        return 1.0 / (1.0 + math.exp(-self.logit))


class Localizer:
    """Decode, transform and localise files with a loaded run (the evaluation transform of its data config).

    Args:
        cfg: the run's config.
        task: the run's task (:func:`load_localizer`).
        device: where to run the model.
        timeout_s: decode-time budget per file.
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        task: CorrespondenceTask,
        device: torch.device | str = "cpu",
        timeout_s: float | None = 60.0,
    ) -> None:
        if tuple(sorted(cfg.data.modalities)) != ("audio", "video"):
            raise UsageError(f"the run reads {list(cfg.data.modalities)}: localisation needs video and audio")
        self.cfg, self.task = cfg, task
        self.device = torch.device(device)
        self.task.model.to(self.device).eval()
        # one view per window: the centre crop (a heatmap is read against that crop's geometry)
        self.transform = WindowTransform(dataclasses.replace(cfg.data, num_test_crops=1), train=False)
        self.timeout_s = timeout_s

    @cached_property
    def places(self) -> Places:
        """Where AVOL's places sit on the model frame (:meth:`CorrespondenceTask.video_places`), the same for every
        heatmap; read when the first one is scored (a run with the AVE head only may have a video stem without
        places)."""
        return self.task.video_places()

    def load(self, path: str | os.PathLike[str], start: float | None = None) -> LocalizedClip:
        """The evaluation window of ``path`` (the centre one, or the one at ``start``) as the model sees it.

        Raises:
            MediaError: missing, unreadable, no video, or no audio (localisation needs both).
        """
        path = str(path)
        data = self.cfg.data
        length = data.window_seconds
        if start is None:
            duration = media_duration(path, timeout_s=self.timeout_s)
            s = uniform_clip_windows(duration, length, 1)[0][0] if duration is not None else 0.0
        else:
            s = start
        clip = decode_clip(
            path, s, s + length, fps=data.video.fps, size=data.video.short_side, sample_rate=data.audio.sample_rate,
            timeout_s=self.timeout_s,
        )  # fmt: skip
        if not clip.has_video or clip.video is None or len(clip.video) == 0:
            raise MediaError(path, "no video frames in the window: localisation needs a picture")
        if not clip.has_audio or clip.audio is None or len(clip.audio) == 0:
            raise MediaError(path, "no audio in the window: localisation needs the sound")
        frames = clip.video
        views = self.transform(path, frames, clip.audio, None)
        idx = self.transform.video.select_frames(len(frames)) if self.transform.video is not None else []
        decoded_hw = (int(frames.shape[1]), int(frames.shape[2]))
        geometry = ViewGeometry.of(decoded_hw, decoded_hw, data.video)
        ts = clip.video_timestamps if clip.video_timestamps is not None else np.arange(len(frames)) / data.video.fps
        return LocalizedClip(
            path=path, window=(s, s + length), frames=frames[idx], timestamps=np.asarray(ts)[idx], audio=clip.audio,
            sample_rate=clip.sample_rate, geometry=geometry, sample=views[0], notes=list(clip.warnings),
        )  # fmt: skip

    def score(self, clips: Sequence[LocalizedClip]) -> None:
        """Fill in each clip's heatmaps (AVOL's map and the gradient heatmap) and logit (one batch)."""
        batch = collate([c.sample for c in clips])
        grad, out = gradient_heatmap(self.task, batch["video"].to(self.device), batch["audio"].to(self.device))
        for c, m, g, lg in zip(clips, out.logit_map.cpu(), grad.cpu(), out.logit.cpu(), strict=True):
            c.heatmap, c.gradient, c.logit = m, g, float(lg)
            c.places = self.places


def _source_frames(timestamps: np.ndarray, fps: float, num_frames: int) -> list[int]:
    """The source frame on screen at each timestamp (the latest one starting at or before it)."""
    return [min(max(math.floor(t * fps + 1e-6), 0), num_frames - 1) for t in timestamps]


# ---- evaluation -------------------------------------------------------------------------------------------------
def _batches(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


@torch.no_grad()
def evaluate_localization(
    localizer: Localizer,
    manifest: str | Path,
    *,
    root: str | None = None,
    batch_size: int | None = None,
    limit: int | None = None,
    mosaics: bool = False,
) -> dict[str, float]:
    """Correspondence, pointing (clips with an events sidecar) and, with ``mosaics``, the 2×2 mosaic game on the clips
    of ``manifest`` (see the module docstring).

    Returns:
        ``clips``; ``ave_acc`` / ``avol_acc`` (the heads trained) and ``pairs``; with sidecars ``pointing``,
        ``pointing_gradient``, ``pointing_chance``, their ``_all_frames`` versions, ``pointing_clips``; with
        ``mosaics`` ``mosaic_acc``, ``mosaic_trials``,
        ``mosaic_chance`` (0.25); ``skipped`` (clips that could not be read).

    Raises:
        UsageError: an unreadable manifest, or no clip that could be read.
    """
    try:
        rows = list(read_manifest(manifest, root=root))
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read the manifest {manifest}: {e}") from e
    if limit is not None:
        rows = rows[:limit]
    task, opts = localizer.task, localizer.task.options
    batch_size = batch_size or localizer.cfg.train.batch_size  # the trainer's validation batches: the same pairs
    clips: list[LocalizedClip] = []
    index: list[int] = []
    skipped = 0
    for i, row in enumerate(rows):
        try:
            clips.append(localizer.load(row.path))
            index.append(i)
        except (MediaError, OSError, ValueError):
            skipped += 1
    if not clips:
        raise UsageError(f"{manifest}: none of its {len(rows)} clips could be read")
    res: dict[str, float] = {"clips": float(len(clips)), "skipped": float(skipped)}
    dev = localizer.device
    # correspondence: the task's own pairs over batches of the val set
    correct: dict[str, list[float]] = {}
    for r in _batches(len(clips), batch_size):
        batch = collate([clips[j].sample for j in r])
        batch["index"] = torch.tensor([index[j] for j in r])
        usable = batch["has_audio"].bool() & batch["has_video"].bool()
        partner, target = correspondence_pairs(batch["index"], usable, opts.seed, opts.negative_fraction)
        scores = task.pair_logits({"video": batch["video"].to(dev), "audio": batch["audio"].to(dev)}, partner.to(dev))
        for name, logit in scores.items():
            hit = ((logit.cpu() > 0).float() == target)[usable]
            correct.setdefault(name, []).extend(hit.tolist())
    for name, hits in correct.items():
        res[f"{name}_acc"] = sum(hits) / max(len(hits), 1)
    res["pairs"] = float(len(next(iter(correct.values()), [])))
    # pointing on clips with sidecars
    if "avol" in task.heads:
        for r in _batches(len(clips), batch_size):
            localizer.score([clips[j] for j in r])
        res.update(pointing_game(localizer, clips))
        if mosaics:
            res.update(_mosaic_game(localizer, clips))
    elif mosaics:
        raise UsageError("the run trained no localisation head (task.options.heads: ave): no mosaics")
    return res


def pointing_game(localizer: Localizer, clips: Sequence[LocalizedClip]) -> dict[str, float]:
    """The pointing game on the clips with an events sidecar, at the burst frames and at every frame."""
    hits: dict[str, list[float]] = {}
    chance: dict[str, list[float]] = {"": [], "_all_frames": []}
    for c in clips:
        side = events_path(c.path)
        if not side.is_file():
            continue
        ev = read_events(side)
        boxes = ev["boxes"][ev["sounding"]]
        src = _source_frames(c.timestamps, ev["fps"], len(boxes))
        geom = ViewGeometry.of(tuple(ev["size"]), (c.frames.shape[1], c.frames.shape[2]), localizer.cfg.data.video)
        bursts = set(ev["burst_frames"])
        frames = {"": [f for f in src if f in bursts], "_all_frames": src}
        if not frames[""]:  # no burst in the window the model saw: nothing sounded
            continue
        for suffix, fs in frames.items():
            for kind in HEATMAPS:
                h, ch = pointing(c.map_of(kind), [geom.box(boxes[f]) for f in fs], geom.size, c.places_of(kind))
                hits.setdefault(f"pointing{'_gradient' if kind == 'gradient' else ''}{suffix}", []).append(h)
            chance[suffix].append(ch)
    n = len(chance[""])
    if not n:
        return {}
    res = {k: sum(v) / n for k, v in hits.items()}
    res |= {f"pointing_chance{k}": sum(v) / n for k, v in chance.items()}
    return res | {"pointing_clips": float(n)}


def _mosaic_game(localizer: Localizer, clips: Sequence[LocalizedClip]) -> dict[str, float]:
    """Groups of four consecutive clips, each of their audios in turn against the 2×2 mosaic of their frames."""
    task, dev = localizer.task, localizer.device
    right = dict.fromkeys(HEATMAPS, 0)
    trials = 0
    for g in range(len(clips) // 4):
        group = [clips[4 * g + k].sample for k in range(4)]
        video = mosaic(torch.stack([s["video"] for s in group])).to(dev)  # (C, T, 2H, 2W)
        audio = torch.stack([s["audio"] for s in group]).to(dev)  # each clip's audio in turn
        grad, out = gradient_heatmap(task, video.expand(4, *video.shape), audio)
        size = (video.shape[-2], video.shape[-1])
        for k in range(4):
            right["map"] += int(quadrant(out.logit_map[k].cpu(), size, localizer.places) == k)
            right["gradient"] += int(quadrant(grad[k].cpu(), size) == k)
            trials += 1
    if trials == 0:
        return {}
    return {
        "mosaic_acc": right["map"] / trials,
        "mosaic_acc_gradient": right["gradient"] / trials,
        "mosaic_trials": float(trials),
        "mosaic_chance": 0.25,
    }


# ---- pictures ---------------------------------------------------------------------------------------------------
def overlay_frames(clip: LocalizedClip, *, kind: str = "map", alpha: float = 0.45, min_side: int = 256) -> np.ndarray:
    """The clip's frames with its heatmap laid over the part the model saw: (T, H', W', 3) uint8, scaled up by a
    whole factor to at least ``min_side`` pixels on the short side (nearest neighbour) and to even sides (H.264);
    the heatmap peak is marked with a white cross."""
    from matplotlib import colormaps

    hmap = clip.map_of(kind)
    g, frames = clip.geometry, clip.frames.astype(np.float32)
    H, W = frames.shape[1:3]
    heat = upsample(hmap, (g.size, g.size), clip.places_of(kind))
    heat = (heat - heat.min()) / (heat.max() - heat.min()).clamp_min(1e-6)
    rgb = torch.from_numpy(colormaps["jet"](heat.numpy())[..., :3].astype(np.float32) * 255)  # (size, size, 3)
    # the model's frame in the decoded frame's pixels (the crop, undone of the resize)
    y0, x0 = round(g.top / g.scale_y), round(g.left / g.scale_x)
    h, w = min(round(g.size / g.scale_y), H - y0), min(round(g.size / g.scale_x), W - x0)
    rgb = F.interpolate(rgb.permute(2, 0, 1)[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    rgb_np = rgb.permute(1, 2, 0).numpy()
    out = frames.copy()
    out[:, y0 : y0 + h, x0 : x0 + w] = (1 - alpha) * out[:, y0 : y0 + h, x0 : x0 + w] + alpha * rgb_np
    k = max(1, math.ceil(min_side / min(H, W)))
    out = out.repeat(k, axis=1).repeat(k, axis=2)
    py, px = peak(hmap, (g.size, g.size), clip.places_of(kind))
    cy, cx = round((y0 + (py + 0.5) / g.scale_y) * k), round((x0 + (px + 0.5) / g.scale_x) * k)
    arm = max(3, k * 2)
    out[:, max(cy - arm, 0) : cy + arm + 1, max(cx - 1, 0) : cx + 2] = 255.0
    out[:, max(cy - 1, 0) : cy + 2, max(cx - arm, 0) : cx + arm + 1] = 255.0
    out = out[:, : out.shape[1] // 2 * 2, : out.shape[2] // 2 * 2]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def plot_localization(out_png: str | Path, clip: LocalizedClip, *, kind: str = "map", num_frames: int = 4) -> Path:
    """A PNG of ``num_frames`` frames spread over the window, each with the heatmap overlay (:func:`overlay_frames`),
    titled with the file, the window and the model's match probability."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frames = overlay_frames(clip, kind=kind)
    picks = np.linspace(0, len(frames) - 1, min(num_frames, len(frames))).round().astype(int)
    fig = Figure(figsize=(3.0 * len(picks), 3.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for i, t in enumerate(picks):
        ax = fig.add_subplot(1, len(picks), i + 1)
        ax.imshow(frames[t])
        ax.set_title(f"{clip.timestamps[t]:.2f} s", fontsize=9)
        ax.axis("off")
    fig.suptitle(
        f"{Path(clip.path).name}  ({clip.window[0]:.2f}-{clip.window[1]:.2f} s)   p(sound matches picture) = "
        f"{clip.probability:.2f}   ({'AVOL map' if kind == 'map' else 'gradient heatmap'})",
        fontsize=10,
    )
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=fig.dpi)
    return out


def write_overlay_mp4(out_mp4: str | Path, clip: LocalizedClip, fps: float, *, kind: str = "map") -> Path:
    """An MP4 (H.264 yuv420p + AAC mono) of the window: every frame with the heatmap overlay, and its sound."""
    import av

    frames = overlay_frames(clip, kind=kind)
    out = Path(out_mp4)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.mp4")
    rate = max(1, round(fps))
    with av.open(str(tmp), mode="w") as container:
        vstream = container.add_stream("libx264", rate=rate, options={"crf": "20", "preset": "fast", "threads": "1"})
        vstream.width, vstream.height = frames.shape[2], frames.shape[1]
        vstream.pix_fmt = "yuv420p"
        astream = container.add_stream("aac", rate=clip.sample_rate, layout="mono")
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode(None))
        if clip.audio.size:
            aframe = av.AudioFrame.from_ndarray(clip.audio.astype(np.float32)[None, :], format="fltp", layout="mono")
            aframe.sample_rate = clip.sample_rate
            aframe.pts = 0
            container.mux(astream.encode(aframe))
        container.mux(astream.encode(None))
    os.replace(tmp, out)
    return out
