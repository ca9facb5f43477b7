"""Long clips without any audio-visual timing link, made of AV-Digits clips: the sync task's negative control.

``configs/experiment/sync_av_digits.yaml`` trains the synchronisation recipe on these clips. AV-Digits' own clips
last 1 s, shorter than the recipe's window plus its offset span, so every window would sit at one place in the file
per offset class, and a model that tells where in a file a window lies (x264's frame-type pattern, the digit's
path) reads the offset from that alone (docs/sync.md). Here each clip is ``--seconds`` AV-Digits clips in a row:

* video: the frames of ``--seconds`` clips of the split, one after the other (cuts every second);
* audio: the sound of ``--seconds + 1`` *other* clips of the split, one after the other, started at a random phase
  in ``[0, 1)`` s, so its cuts fall at random times against the video's; no sound belongs to the picture it plays
  with, and no time of the audio is tied to a time of the video.

Encoded as AV-Digits is (H.264 High, CRF 23, preset medium, x264's B-frames on; AAC 16 kHz mono), so codec effects
stay in. Clips are drawn per (``--seed``, split, clip index) with replacement from that split's manifest (train
from ``train.csv``, val from ``val.csv``). The x264 bitstream is not byte-reproducible with B-frames on; the
composition is (``meta.csv``: the source clips and the phase, for analysis only). ``label`` is the first video
clip's digit (the sync task reads no label).

    python tools/av_digits_sequences.py runs/data/av_digits_seq --seconds 6 --train 1200 --val 300
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import av
import numpy as np

from avformer.data.manifest import read_manifest
from avformer.data.media import decode_clip

FPS, SR, SIDE = 16, 16000, 64


def _decode(path: str) -> tuple[np.ndarray, np.ndarray]:
    clip = decode_clip(path, 0.0, 1.0, fps=FPS, size=(SIDE, SIDE), sample_rate=SR)
    assert clip.video is not None and clip.audio is not None
    frames = clip.video[:FPS]
    if len(frames) < FPS:  # AV-Digits has 16 frames; repeat the last one if a decoder gave fewer
        frames = np.concatenate([frames, np.repeat(frames[-1:], FPS - len(frames), 0)])
    audio = np.zeros(SR, np.float32)
    audio[: min(SR, len(clip.audio))] = clip.audio[:SR]
    return frames, audio


def _encode(path: Path, frames: np.ndarray, audio: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), mode="w") as out:
        v = out.add_stream("libx264", rate=FPS, options={"crf": "23", "preset": "medium", "threads": "1"})
        v.width, v.height, v.pix_fmt = SIDE, SIDE, "yuv420p"
        a = out.add_stream("aac", rate=SR, layout="mono")
        a.bit_rate = 32000
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        af = av.AudioFrame.from_ndarray(audio[None, :], format="fltp", layout="mono")
        af.sample_rate, af.pts = SR, 0
        out.mux(a.encode(af))
        out.mux(a.encode(None))
    tmp.replace(path)  # never a half-written clip under its final name


def write_split(src: Path, out: Path, split: str, n: int, seconds: int, seed: int) -> list[list[str]]:
    rows = list(read_manifest(src / f"{split}.csv"))
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def get(i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in cache:
            cache[i] = _decode(rows[i].path)
        return cache[i]

    (out / "clips" / split).mkdir(parents=True, exist_ok=True)
    written: list[list[str]] = []
    for k in range(n):
        rng = np.random.default_rng([seed, 0 if split == "train" else 1, k])
        vids = rng.choice(len(rows), seconds, replace=False)
        auds = rng.choice(np.setdiff1d(np.arange(len(rows)), vids), seconds + 1, replace=False)
        phase = float(rng.uniform(0.0, 1.0))
        frames = np.concatenate([get(int(i))[0] for i in vids])
        sound = np.concatenate([get(int(i))[1] for i in auds])
        s0 = round(phase * SR)
        rel = f"clips/{split}/{k:05d}.mp4"
        _encode(out / rel, frames, sound[s0 : s0 + seconds * SR])
        label = rows[int(vids[0])].labels[0] if rows[int(vids[0])].labels else ""
        name = lambda i: "/".join(Path(rows[int(i)].path).parts[-2:])  # noqa: E731  (e.g. train/00012.mp4)
        written.append([rel, label, split, " ".join(map(name, vids)), " ".join(map(name, auds)), f"{phase:.4f}"])
        if (k + 1) % 100 == 0:
            print(f"{split}: {k + 1}/{n}", flush=True)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--data", type=Path, default=Path("../shared/data/av-digits"), help="the AV-Digits folder")
    p.add_argument("--seconds", type=int, default=6, help="AV-Digits clips per output clip (default 6)")
    p.add_argument("--train", type=int, default=1200, help="training clips (default 1200)")
    p.add_argument("--val", type=int, default=300, help="validation clips (default 300)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not (args.data / "train.csv").is_file():
        print(f"av_digits_sequences: error: {args.data}/train.csv not found (--data)", file=sys.stderr)
        return 2
    if args.seconds < 2 or args.train < 1 or args.val < 1:
        print("av_digits_sequences: error: --seconds >= 2, --train and --val >= 1", file=sys.stderr)
        return 2
    meta = []
    for split, n in (("train", args.train), ("val", args.val)):
        rows = write_split(args.data, args.out, split, n, args.seconds, args.seed)
        with open(args.out / f"{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows([["path", "label"], *[r[:2] for r in rows]])
        meta += rows
    with open(args.out / "meta.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "split", "video_clips", "audio_clips", "audio_phase_s"], *meta])
    print(f"wrote {args.train} + {args.val} clips of {args.seconds} s to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
