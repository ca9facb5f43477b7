"""Localisation evaluation (eval/localization.py): box geometry, the pointing game, mosaics, files, a run's metrics."""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from avformer.data.video import VideoTransformConfig
from avformer.eval.localization import (
    Localizer,
    ViewGeometry,
    evaluate_localization,
    load_localizer,
    mosaic,
    peak,
    plot_localization,
    pointing,
    quadrant,
    upsample,
    write_overlay_mp4,
)
from avformer.layers.conv_embed import Places
from avformer.utils.checkpoint import CheckpointError
from tests.eval._avc_run import make_avc_run, make_events_data


# ---- geometry and the pointing game ------------------------------------------------------------------------------
def test_geometry_of_the_eval_transform() -> None:
    same = ViewGeometry.of((64, 64), (64, 64), VideoTransformConfig(size=64, short_side=64))
    assert same == ViewGeometry(1.0, 1.0, 0, 0, 64)
    assert same.box([3, 4, 20, 30]) == (3.0, 4.0, 20.0, 30.0)
    # a 60 x 100 source decoded at short side 30 (30 x 50), centre crop 30: 10 px cut on the left and the right
    g = ViewGeometry.of((60, 100), (30, 50), VideoTransformConfig(size=30, short_side=30))
    assert (g.scale_y, g.scale_x, g.top, g.left) == (0.5, 0.5, 0, 10)
    assert g.box([50, 0, 100, 60]) == (15.0, 0.0, 30.0, 30.0)  # cut by the crop: the visible part
    assert g.box([0, 0, 10, 60]) == (0.0, 0.0, 0.0, 30.0)  # wholly cropped away: empty
    # resized after decoding (short_side 40, crop 32 of 40 x 66: 4 px from the top, 17 from the left)
    g = ViewGeometry.of((60, 100), (30, 50), VideoTransformConfig(size=32, short_side=40))
    assert (g.scale_y, g.scale_x, g.top, g.left) == (40 / 60, 66 / 100, 4, 17)


def test_pointing_on_constructed_boxes() -> None:
    heat = torch.zeros(4, 4)
    heat[1, 2] = 5.0  # the peak place: rows 8-15, cols 16-23 of a 32 px frame (upsampled: peak pixel near (12, 20))
    py, px = peak(heat, (32, 32))
    assert 8 <= py < 16 and 16 <= px < 24
    inside, outside = (14.0, 6.0, 26.0, 18.0), (0.0, 0.0, 8.0, 8.0)
    hit, chance = pointing(heat, [inside, inside, outside, inside], 32)
    assert hit == 0.75
    assert chance == pytest.approx((3 * 12 * 12 + 64) / 4 / 1024)
    # through the crop / resize map: a 64 x 96 source at short side 32 -> 32 x 48, crop 32 (8 px off the left)
    g = ViewGeometry.of((64, 96), (32, 48), VideoTransformConfig(size=32, short_side=32))
    src_box = [2 * 14 + 16, 2 * 6, 2 * 26 + 16, 2 * 18]  # = `inside` in the model's frame
    assert g.box(src_box) == inside
    assert pointing(heat, [g.box(src_box)], 32) == (1.0, pytest.approx(144 / 1024))
    assert pointing(heat, [g.box([0, 0, 16, 64])], 32) == (0.0, 0.0)  # a box the crop removed: miss, no area
    with pytest.raises(ValueError):
        pointing(heat, [], 32)


def test_upsample_puts_each_value_at_its_place() -> None:
    heat = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    # evenly spread places: what bilinear upsampling with align_corners=False assumes
    even = torch.nn.functional.interpolate(heat[None, None], size=(20, 28), mode="bilinear", align_corners=False)
    assert torch.allclose(upsample(heat, (20, 28)), even[0, 0], atol=1e-6)
    # a stride-4 stem of padded 3x3 convolutions centres place (i, j) on pixel (4i, 4j), where the even spread would
    # put it 1.5 pixels lower and further right: the peak follows the places
    one = torch.zeros(8, 8)
    one[2, 5] = 1.0
    stem = Places((4.0, 4.0), (0.5, 0.5))
    assert peak(one, (32, 32), stem) == (8, 20)
    assert upsample(one, (32, 32), stem)[8, 20] == 1.0
    assert peak(one, (32, 32)) in {(9, 21), (9, 22), (10, 21), (10, 22)}  # 4i + 1.5: between two pixels
    # on a frame, a box that holds the stem's place centre but not the even one's: a hit only with the places
    assert pointing(one, [(18.0, 6.0, 21.0, 9.0)], 32, stem)[0] == 1.0
    assert pointing(one, [(18.0, 6.0, 21.0, 9.0)], 32)[0] == 0.0


def test_mosaic_quadrants() -> None:
    clips = torch.stack([torch.full((3, 2, 4, 4), float(k)) for k in range(4)])
    m = mosaic(clips)
    assert m.shape == (3, 2, 8, 8)
    assert m[0, 0, 0, 0] == 0 and m[0, 0, 0, 7] == 1 and m[0, 0, 7, 0] == 2 and m[0, 0, 7, 7] == 3
    for k, (r, c) in enumerate([(0, 0), (0, 3), (3, 0), (3, 3)]):
        heat = torch.zeros(4, 4)
        heat[r, c] = 1.0
        assert quadrant(heat, (64, 64)) == k
    with pytest.raises(ValueError):
        mosaic(clips[:3])


# ---- files and runs ----------------------------------------------------------------------------------------------
def _write_rect_video(path: Path, hw: tuple[int, int], box: tuple[int, int, int, int], frames: int = 8) -> None:
    """A black clip of ``hw`` with a white ``box`` (x0, y0, x1, y1) on every frame, 8 fps, with 1 s of noise."""
    img = np.zeros((*hw, 3), dtype=np.uint8)
    img[box[1] : box[3], box[0] : box[2]] = 255
    with av.open(str(path), mode="w") as c:
        vs = c.add_stream("libx264", rate=8, options={"crf": "10"})
        vs.width, vs.height, vs.pix_fmt = hw[1], hw[0], "yuv420p"
        aus = c.add_stream("aac", rate=16000, layout="mono")
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            f.pts = i
            c.mux(vs.encode(f))
        c.mux(vs.encode(None))
        wav = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
        af = av.AudioFrame.from_ndarray(wav[None], format="fltp", layout="mono")
        af.sample_rate, af.pts = 16000, 0
        c.mux(aus.encode(af))
        c.mux(aus.encode(None))


def test_boxes_land_where_the_decoder_and_transform_put_the_pixels(tmp_path: Path) -> None:
    """A white box in a non-square source lands in the model's (cropped, resized) frame where ViewGeometry says."""
    src = tmp_path / "rect.mp4"
    box = (40, 8, 64, 40)
    _write_rect_video(src, (48, 80), box)
    cfg, task, _ = load_localizer(make_avc_run(tmp_path / "run"))
    clip = Localizer(cfg, task).load(src)
    view = clip.sample["video"][:, 3]  # (C, H, W), normalised
    ys, xs = torch.nonzero(view.mean(0) > view.mean(0).mean() + 1.0, as_tuple=True)
    geom = ViewGeometry.of((48, 80), (clip.frames.shape[1], clip.frames.shape[2]), cfg.data.video)
    x0, y0, x1, y1 = geom.box(box)
    assert (geom.top, geom.left) == (0, 10)  # decoded 32 x 53, centre crop 32
    assert abs(int(xs.min()) - x0) <= 1.5 and abs(int(xs.max()) + 1 - x1) <= 1.5
    assert abs(int(ys.min()) - y0) <= 1.5 and abs(int(ys.max()) + 1 - y1) <= 1.5


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_events_data(tmp_path_factory.mktemp("events"))


def test_evaluate_a_run_on_event_clips(tmp_path: Path, events: Path) -> None:
    torch.set_num_threads(1)
    cfg, task, _ = load_localizer(make_avc_run(tmp_path / "run"))
    res = evaluate_localization(Localizer(cfg, task), events / "manifest.csv", batch_size=4, mosaics=True)
    assert res["clips"] == 8 and res["skipped"] == 0 and res["pairs"] == 8
    assert 0 <= res["ave_acc"] <= 1 and 0 <= res["avol_acc"] <= 1
    assert res["pointing_clips"] == 8 and 0 <= res["pointing"] <= 1
    assert 0.02 < res["pointing_chance"] < 0.5  # 2-3 objects in 32 px frames
    assert res["mosaic_trials"] == 8 and res["mosaic_chance"] == 0.25


def test_pointing_is_scored_at_the_burst_frames(tmp_path: Path, events: Path) -> None:
    """A heatmap peaked on the sounding object where it is at its first burst hits there; ``pointing`` scores the
    burst frames only, ``pointing_all_frames`` every frame; a peak far from every box scores 0 on both."""
    from avformer.data.synth_events import events_path, read_events
    from avformer.eval.localization import _source_frames, pointing_game

    cfg, task, _ = load_localizer(make_avc_run(tmp_path / "run"))
    loc = Localizer(cfg, task)
    clip = loc.load(events / "clips" / "000002.mp4")
    ev = read_events(events_path(clip.path))
    boxes = ev["boxes"][ev["sounding"]]
    src = _source_frames(clip.timestamps, ev["fps"], len(boxes))
    geom = ViewGeometry.of(tuple(ev["size"]), (clip.frames.shape[1], clip.frames.shape[2]), cfg.data.video)
    burst = [f for f in src if f in set(ev["burst_frames"])]
    assert burst, "the test clip must hold a burst"
    x0, y0, x1, y1 = geom.box(boxes[burst[0]])
    heat = torch.zeros(geom.size, geom.size)
    heat[int((y0 + y1) / 2), int((x0 + x1) / 2)] = 1.0  # full resolution: upsampling keeps the peak pixel
    clip.heatmap = clip.gradient = heat
    res = pointing_game(loc, [clip])
    inside = [geom.box(boxes[f]) for f in src]
    cy, cx = int((y0 + y1) / 2) + 0.5, int((x0 + x1) / 2) + 0.5
    hit = [b[0] <= cx < b[2] and b[1] <= cy < b[3] for b in inside]
    assert res["pointing"] == pytest.approx(
        sum(h for h, f in zip(hit, src, strict=True) if f in set(burst)) / len(burst)
    )
    assert res["pointing"] > 0 and res["pointing_all_frames"] == pytest.approx(sum(hit) / len(hit))
    assert res["pointing_clips"] == 1 and 0 < res["pointing_chance"] < 1
    empty = torch.zeros(geom.size, geom.size)
    occupied = torch.zeros(geom.size, geom.size, dtype=torch.bool)
    for obj in ev["boxes"]:
        for f in src:
            a0, b0, a1, b1 = geom.box(obj[f])
            occupied[int(b0) : math.ceil(b1), int(a0) : math.ceil(a1)] = True
    free = torch.nonzero(~occupied)
    assert len(free), "the test clip must leave a pixel that no object ever covers"
    empty[tuple(free[0])] = 1.0
    clip.heatmap = clip.gradient = empty
    res = pointing_game(loc, [clip])
    assert res["pointing"] == 0 and res["pointing_all_frames"] == 0


def test_pictures_of_one_file(tmp_path: Path, events: Path) -> None:
    cfg, task, _ = load_localizer(make_avc_run(tmp_path / "run"))
    loc = Localizer(cfg, task)
    clip = loc.load(events / "clips" / "000001.mp4")
    loc.score([clip])
    assert clip.heatmap is not None and clip.heatmap.shape == (8, 8) and 0 < clip.probability < 1
    # the frame_cnn stem (stride 4, padded 3x3 convolutions) centres its places on pixels 0, 4, 8, ...
    assert clip.places == task.video_places() == Places((4.0, 4.0), (0.5, 0.5))
    assert clip.places_of("gradient") is None
    png = plot_localization(tmp_path / "a.png", clip)
    assert png.stat().st_size > 1000
    mp4 = write_overlay_mp4(tmp_path / "a.mp4", clip, fps=cfg.data.video.fps)
    with av.open(str(mp4)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 8 and frames[0].width >= 256


def test_runs_that_cannot_localize_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError):
        load_localizer(tmp_path / "nothing.pt")
    run = make_avc_run(tmp_path / "ave", options={"heads": "ave"})
    _, task, _ = load_localizer(run)
    with pytest.raises(ValueError, match="localisation head"):
        task.localize(torch.zeros(1, 3, 8, 32, 32), torch.zeros(1, 1, 16, 100))
