"""Test helpers for ``eval`` / ``predict``: a tiny untrained run folder and a few media files, written in seconds.

The run folder has what ``avformer train`` writes and :func:`avformer.models.loading.load_run` reads: ``classes.txt``
and ``best.pt`` with the trainer's checkpoint keys (``format``, ``model``, ``ema``, ``trainer``, ``config``). The
models are random: tests check what the commands do with files, not accuracy.
"""

from __future__ import annotations

import wave
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from avformer.config import ExperimentConfig, ModelSpec, dump, to_dict
from avformer.data.audio import AudioFeatureConfig
from avformer.data.dataset import DataConfig
from avformer.data.synth import CLASS_NAMES, SynthConfig, render_clip, write_dataset
from avformer.data.video import VideoTransformConfig
from avformer.models.loading import build_model
from avformer.utils.checkpoint import save_checkpoint
from avformer.utils.run_folder import write_classes

# 1-s windows: 4 frames at 4 fps, 32 px; 64 mel bins x 100 frames
VIDEO = VideoTransformConfig(num_frames=4, fps=4, size=32, short_side=32)
AUDIO = AudioFeatureConfig(num_mel_bins=64, num_frames=100)
SYNTH = SynthConfig(num_clips=12, seconds=1.5, size=32, fps=8)

_SPECS = {
    "av": ModelSpec(
        "av_late_tiny",
        {"audio_overrides": {"input_size": (64, 100)}, "video_overrides": {"input_size": (4, 32, 32)}},
    ),
    "mmt": ModelSpec(
        "mmt_tiny",
        {"audio_overrides": {"input_size": (64, 100)}, "video_overrides": {"input_size": (4, 32, 32)}},
    ),
    "audio": ModelSpec("mat_tiny", {"input_size": (64, 100)}),
}


def make_run(
    out: Path,
    kind: str = "av",
    *,
    classes: Sequence[str] = CLASS_NAMES,
    ema: bool = False,
    num_test_clips: int = 1,
    video: VideoTransformConfig = VIDEO,
    seed: int = 0,
) -> Path:
    """Write a run folder for an untrained model: ``kind`` is ``av`` (late fusion), ``mmt`` or ``audio`` (MAT)."""
    spec = _SPECS[kind]
    modalities = ("audio",) if kind == "audio" else ("video", "audio")
    data = DataConfig(modalities=modalities, video=video, audio=AUDIO, num_test_clips=num_test_clips)
    cfg = ExperimentConfig(name=f"tiny_{kind}", model=spec, data=data)
    torch.manual_seed(seed)
    model = build_model(spec, len(classes))
    state = model.state_dict()
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump(cfg))
    write_classes(out, list(classes))
    save_checkpoint(
        out / "best.pt",
        {
            "format": 1,
            "model": state,
            # EMA shadow = the weights, shifted, so a test can tell which set was loaded
            "ema": {"shadow": {k: v + 1.0 if v.is_floating_point() else v for k, v in state.items()}} if ema else None,
            "trainer": {"epoch": 3},
            "config": to_dict(cfg),
        },
    )
    return out


def make_synth(out: Path) -> Path:
    """The synthetic shape x sound dataset, 12 clips of 1.5 s (H.264 + AAC MP4); returns ``manifest.csv``."""
    return write_dataset(out, SYNTH, workers=1)


def write_video_only(path: Path, index: int = 0) -> Path:
    """A synthetic clip's frames as an MP4 with no audio track (MPEG-4 part 2)."""
    frames, _, _ = render_clip(SYNTH, index)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=SYNTH.fps)
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, SYNTH.fps)
            c.mux(vs.encode(frame))
        c.mux(vs.encode(None))
    return path


def write_wav(path: Path, seconds: float = 1.5, index: int = 0) -> Path:
    """A synthetic clip's sound as a 16-bit mono WAV (``seconds`` long, padded or cut)."""
    _, audio, _ = render_clip(SYNTH, index)
    n = round(seconds * SYNTH.sample_rate)
    pcm = np.zeros(n, dtype=np.int16)
    a = np.round(np.clip(audio[:n], -1, 1) * 32767).astype(np.int16)
    pcm[: len(a)] = a
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SYNTH.sample_rate)
        w.writeframes(pcm.tobytes())
    return path
