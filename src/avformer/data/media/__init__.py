"""Media decoding with PyAV: one time window of a file -> a :class:`Clip` (frames + mono waveform, one clock).

Entry points: :func:`decode_clip` (the dataset's reader), :func:`load_audio` (audio only), :func:`probe` (what is
in a file and does it really decode; ``avformer probe``) and :func:`media_duration` (header duration, cheap).

Modules:

- :mod:`~avformer.data.media.types`: :class:`MediaError`, :class:`Clip`, :class:`StreamInfo`, :class:`ProbeInfo`.
- :mod:`~avformer.data.media.container`: opening a container, choosing streams, the clock, header duration.
- :mod:`~avformer.data.media.geometry`: display rotation and output size.
- :mod:`~avformer.data.media.sinks`: the video and audio sinks of a decode pass.
- :mod:`~avformer.data.media.decode`: :func:`decode_clip`, :func:`load_audio`, :func:`media_duration`.
- :mod:`~avformer.data.media.probing`: :func:`probe`.

Each module's docstring lists the decisions taken where the spec was silent (all are tested in
``tests/data/test_media.py``).
"""

from __future__ import annotations

from avformer.data.media.decode import DEFAULT_MAX_SIDE, decode_clip, load_audio, media_duration
from avformer.data.media.probing import probe
from avformer.data.media.types import Clip, MediaError, ProbeInfo, StreamInfo

__all__ = [
    "DEFAULT_MAX_SIDE",
    "Clip",
    "MediaError",
    "ProbeInfo",
    "StreamInfo",
    "decode_clip",
    "load_audio",
    "media_duration",
    "probe",
]
