"""ESC-50 (Piczak 2015, https://github.com/karolpiczak/ESC-50) read as it ships: ``meta/esc50.csv`` is a manifest.

The dataset's index has the columns ``filename,fold,target,category,esc10,src_file,take``; the audio is in
``audio/`` beside ``meta/``. Reading ``meta/esc50.csv`` (format ``esc50``, detected from that header) gives one row
per clip with the ``category`` as its label. The evaluation protocol is 5-fold cross-validation, so the split
selects folds: ``fold3`` keeps fold 3 (validation), ``except-fold3`` the other four (training); an ``esc10:`` prefix
keeps only the ESC-10 subset (``esc10:fold3``). No split keeps every clip.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from avformer.data.manifest import ManifestError, ManifestRow, ReadOptions, register_manifest_format

__all__ = ["read_esc50"]

_SPLIT = re.compile(r"^(esc10:)?(except-)?fold([1-5])$")


def _is_esc50(path: Path, header: list[str]) -> bool:
    return {"filename", "fold", "category"} <= set(header)


@register_manifest_format("esc50", detect=_is_esc50)
def read_esc50(path: Path, root: Path, options: ReadOptions) -> list[ManifestRow]:
    """The clips of ``meta/esc50.csv`` (audio from ``../audio/``) in the folds ``options.split`` names."""
    esc10, exclude, fold = False, False, None
    if options.split is not None:
        m = _SPLIT.match(options.split)
        if m is None:
            raise ManifestError(
                f"{path}: ESC-50 split {options.split!r}: use foldK or except-foldK (K in 1..5), optionally "
                "prefixed by esc10:"
            )
        esc10, exclude, fold = m.group(1) is not None, m.group(2) is not None, m.group(3)
    audio = path.resolve().parent.parent / "audio"
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        for rec in csv.DictReader(f):
            if esc10 and rec.get("esc10", "").strip().lower() != "true":
                continue
            if fold is not None and (rec["fold"].strip() == fold) == exclude:
                continue
            rows.append(ManifestRow(path=str(audio / rec["filename"]), labels=(rec["category"],), id=rec["filename"]))
    return rows
