"""Where the views of one clip are read: their video windows and the (possibly shifted) audio windows.

:func:`place_views` turns a row's time span, the window length and a :class:`~avformer.data.config.ViewConfig` into
``(video_start, audio_start, offset)`` per view, all inside the span, so the audio of every view is real audio of
the file. It is pure (tested without media); the dataset decodes the windows it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avformer.data.config import ViewConfig

__all__ = ["ViewError", "ViewWindow", "place_views"]


@dataclass(frozen=True)
class ViewWindow:
    """One view: the video window starts at ``video_start``, the audio window at ``video_start + offset``; both
    last the window length (seconds)."""

    video_start: float
    offset: float
    offset_class: int | None = None  # index of ``offset`` in ``ViewConfig.audio_offset_grid`` (grid mode only)

    @property
    def audio_start(self) -> float:
        return self.video_start + self.offset


class ViewError(ValueError):
    """The row cannot hold the requested windows (too short for the window and the offset)."""


def _uniform(lo: float, hi: float, gen: torch.Generator) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _offset(cfg: ViewConfig, room: float, gen: torch.Generator) -> float:
    """The audio shift of one view; ``room`` = span - window length (the most the two windows can differ)."""
    if cfg.max_audio_offset <= 0:
        if abs(cfg.audio_offset) > room + 1e-9:
            raise ViewError(f"an audio offset of {cfg.audio_offset:g} s does not fit ({room:.3g} s of room)")
        return cfg.audio_offset
    hi = min(cfg.max_audio_offset, room)
    lo = cfg.min_audio_offset
    if lo > hi + 1e-9:
        raise ViewError(f"an audio offset of at least {lo:g} s does not fit ({room:.3g} s of room)")
    magnitude = _uniform(lo, hi, gen)
    return magnitude if float(torch.rand((), generator=gen)) < 0.5 else -magnitude


def place_views(
    start: float, end: float, length: float, cfg: ViewConfig, gen: torch.Generator, *, train: bool
) -> list[ViewWindow]:
    """The windows of a sample's views inside ``[start, end]`` (seconds).

    Training draws every window (and random offset) from ``gen``; evaluation takes one view with its video window
    centred where the offset leaves room (a random offset is still drawn from ``gen``, which an evaluation dataset
    seeds per row: the same offsets every time).

    Raises:
        ViewError: the span is shorter than the window, or too short for the offset.
    """
    span = end - start
    room = span - length
    if room < -1e-9:
        raise ViewError(f"the clip ({span:.3g} s) is shorter than the {length:g} s window")
    room = max(room, 0.0)
    if cfg.view_gap != "random":
        return _spaced_views(start, span, length, cfg, gen, train=train)
    if cfg.audio_offset_grid:
        return _grid_views(start, end, length, cfg, gen, train=train)
    views: list[ViewWindow] = []
    for _ in range(cfg.num_views if train else 1):
        if cfg.same_window and views:  # the same window and offset: the views differ by augmentation only
            views.append(views[0])
            continue
        offset = _offset(cfg, room, gen)
        # video window [v, v + L] and audio window [v + o, v + o + L], both inside [start, end]
        lo, hi = start + max(0.0, -offset), end - length - max(0.0, offset)
        views.append(ViewWindow(_uniform(lo, hi, gen) if train else (lo + hi) / 2, offset))
    return views


def _spaced_views(
    start: float, span: float, length: float, cfg: ViewConfig, gen: torch.Generator, *, train: bool
) -> list[ViewWindow]:
    """Views ``step`` seconds apart (``overlapped``: L/2, ``adjacent``: L, ``far``: half the span), all inside the
    span; the first one drawn uniformly where the whole run of views fits (evaluation: one centred view)."""
    if not train:
        return [ViewWindow(start + (span - length) / 2, 0.0)]
    step = {"overlapped": length / 2, "adjacent": length, "far": span / 2}[cfg.view_gap]
    if cfg.view_gap == "far" and span < 2 * length - 1e-9:
        raise ViewError(f"views far apart need a clip of at least {2 * length:g} s, this one has {span:.3g} s")
    extent = length + step * (cfg.num_views - 1)
    if extent > span + 1e-9:
        raise ViewError(
            f"{cfg.num_views} {cfg.view_gap} views of {length:g} s need {extent:.3g} s, the clip has {span:.3g} s"
        )
    first = _uniform(start, start + max(span - extent, 0.0), gen)
    return [ViewWindow(first + i * step, 0.0) for i in range(cfg.num_views)]


def _grid_views(
    start: float, end: float, length: float, cfg: ViewConfig, gen: torch.Generator, *, train: bool
) -> list[ViewWindow]:
    """Views with one offset each from ``cfg.audio_offset_grid`` (uniform over its classes); the window of the
    ``cfg.grid_anchor`` stream lies where every grid offset fits, so its place is independent of the drawn offset
    (uniform there, in evaluation too: ``gen`` is deterministic per row there); the other stream's window is moved
    by the offset. Neither window comes closer than ``cfg.grid_margin`` to an end of the row."""
    grid = cfg.audio_offset_grid
    video_anchor = cfg.grid_anchor == "video"
    start, end = start + cfg.grid_margin, end - cfg.grid_margin
    if video_anchor:  # video window [v, v + L], audio [v + o, v + o + L]
        lo, hi = start + max(0.0, -grid[0]), end - length - max(0.0, grid[-1])
    else:  # audio window [u, u + L], video [u - o, u - o + L]
        lo, hi = start + max(0.0, grid[-1]), end - length - max(0.0, -grid[0])
    if hi < lo - 1e-9:
        margins = f" and 2 x {cfg.grid_margin:g} s of margin" if cfg.grid_margin else ""
        raise ViewError(
            f"the clip ({end - start + 2 * cfg.grid_margin:.3g} s) is shorter than the {length:g} s window plus the "
            f"offset grid [{grid[0]:+g}, {grid[-1]:+g}] s{margins}"
        )
    hi = max(hi, lo)
    views: list[ViewWindow] = []
    for _ in range(cfg.num_views if train else 1):
        if cfg.same_window and views:
            views.append(views[0])
            continue
        k = int(torch.randint(len(grid), (), generator=gen))
        anchor = _uniform(lo, hi, gen)
        video_start = anchor if video_anchor else min(max(anchor - grid[k], start), end - length)  # float slack
        views.append(ViewWindow(video_start, grid[k], k))
    return views
