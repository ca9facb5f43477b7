"""Manifests: the list of media files a dataset is made of, read from the formats users arrive with.

Formats (``fmt``; ``"auto"`` guesses from the extension and the header):

- ``csv`` / ``jsonl`` (avformer's own): ``path`` and ``label`` (one class) or ``labels`` (several, separated by
  ``;``), optional ``start``/``end`` (seconds), ``text`` and ``id``. Paths are relative to ``root`` (default: the
  manifest's folder) unless absolute.
- ``vggsound``: the VGGSound CSV ``ytid,start,label,split`` (the official file has no header). Files are looked up
  by ``vggsound_pattern`` (default ``{ytid}_{start:06d}.mp4``, several common layouts are tried), clip window
  ``[start, start + 10)`` seconds unless the file is already cut (``cut=True``, the default: the window is the file).
- ``kinetics``: the Kinetics CSV ``label,youtube_id,time_start,time_end,split``; files are looked up as
  ``{youtube_id}_{time_start:06d}_{time_end:06d}.mp4`` directly under ``root``, under ``root/<split>/`` or under
  ``root/<split>/<label>/`` (the layouts of the common download scripts).
- ``ast-json``: the AST / CAV-MAE datafile ``{"data": [{"wav": ..., "labels": "/m/09x0r,/m/05zppz", ...}]}`` with a
  ``class_labels_indices.csv`` (``index,mid,display_name``) beside it or given as ``classes``; multi-label, classes
  in the file's index order. ``video_path``/``video_id`` keys, when present, point at the video.

The result is a :class:`Manifest`: rows with absolute paths and string labels, plus the ordered class list that
maps labels to indices. Rows whose file does not exist are kept (the dataset skips and counts them at load time),
unless ``drop_missing=True``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

__all__ = [
    "Manifest",
    "ManifestError",
    "ManifestFormat",
    "ManifestRow",
    "ReadOptions",
    "manifest_formats",
    "read_manifest",
    "register_manifest_format",
    "write_manifest",
]

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".wma", ".aiff", ".aif"})


class ManifestError(ValueError):
    """A manifest that cannot be read: names the file, the line and what is wrong."""


@dataclass(frozen=True)
class ManifestRow:
    """One item of a dataset.

    Attributes:
        path: absolute path (or URL) of the media file.
        labels: class names (empty for unlabeled data, one for single-label data).
        start: window start in seconds, or None for the start of the file.
        end: window end in seconds, or None for the end of the file.
        text: optional caption / transcript.
        id: a stable identifier (defaults to the path relative to the root).
    """

    path: str
    labels: tuple[str, ...] = ()
    start: float | None = None
    end: float | None = None
    text: str | None = None
    id: str = ""

    @property
    def label(self) -> str | None:
        """The single label, or None when the row has none."""
        return self.labels[0] if self.labels else None


@dataclass
class Manifest:
    """Rows plus the class list (index order) and whether the data is multi-label."""

    rows: list[ManifestRow]
    classes: list[str] = field(default_factory=list)
    multilabel: bool = False
    source: str = ""

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[ManifestRow]:
        return iter(self.rows)

    def __getitem__(self, i: int) -> ManifestRow:
        return self.rows[i]

    @property
    def class_to_index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def label_indices(self, row: ManifestRow) -> list[int]:
        """Class indices of a row; raises ManifestError for a label outside ``classes``."""
        lookup = self.class_to_index
        try:
            return [lookup[label] for label in row.labels]
        except KeyError as e:
            raise ManifestError(f"{self.source}: row {row.id!r} has label {e.args[0]!r} not in the class list") from e

    def subset(self, indices: Sequence[int]) -> Manifest:
        return Manifest([self.rows[i] for i in indices], list(self.classes), self.multilabel, self.source)


# ---- formats -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadOptions:
    """What :func:`read_manifest` passes to a format's reader besides the file and the media root."""

    split: str | None = None
    classes_path: Path | None = None  # a class file the user gave (readers with their own class file use it)
    vggsound_pattern: str | None = None
    vggsound_cut: bool = True


Reader = Callable[[Path, Path, ReadOptions], "list[ManifestRow] | tuple[list[ManifestRow], list[str]]"]


@dataclass(frozen=True)
class ManifestFormat:
    """A registered manifest format.

    Attributes:
        name: the ``fmt`` value that selects it.
        read: ``read(path, root, options)`` -> rows, or ``(rows, classes)`` when the format fixes the class order.
        detect: ``detect(path, header)`` -> True when the file is in this format (``header``: its first CSV row,
            stripped; empty for binary or non-CSV files); None: only chosen by name.
        multilabel: rows may carry several labels even when each has one (AudioSet).
    """

    name: str
    read: Reader
    detect: Callable[[Path, list[str]], bool] | None = None
    multilabel: bool = False


_FORMATS: dict[str, ManifestFormat] = {}
_R = TypeVar("_R", bound=Reader)


def register_manifest_format(
    name: str, *, detect: Callable[[Path, list[str]], bool] | None = None, multilabel: bool = False
) -> Callable[[_R], _R]:
    """Decorator: register ``read(path, root, options)`` as manifest format ``name``. ``fmt="auto"`` tries the
    formats' ``detect`` in registration order (the built-in ones first)."""

    def deco(fn: _R) -> _R:
        if name in _FORMATS:
            raise ValueError(f"manifest format {name!r} is registered twice")
        _FORMATS[name] = ManifestFormat(name, fn, detect, multilabel)
        return fn

    return deco


def manifest_formats() -> list[str]:
    """The registered format names, in detection order."""
    return list(_FORMATS)


def _float_or_none(value: str | float | int | None) -> float | None:
    if value is None or value == "":
        return None
    x = float(value)
    if not (math.isfinite(x) and x >= 0):
        raise ValueError(f"{value!r} is not a finite time >= 0")
    return x


def _natural_key(label: str) -> tuple[int, float | str]:
    """Numbers in numeric order, then strings alphabetically ('2' < '10' < 'cat')."""
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def _resolve(root: Path, p: str) -> str:
    if "://" in p:
        return p
    path = Path(p).expanduser()
    return str(path if path.is_absolute() else (root / path))


def _read_classes_file(path: Path) -> tuple[list[str], dict[str, str]]:
    """A class list: ``class_labels_indices.csv`` (index,mid,display_name) or a text file with one name a line.

    Returns the display names in index order and a map from mid (AudioSet id) to display name.
    """
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
        if rows and {"index", "mid", "display_name"} <= set(rows[0]):
            rows.sort(key=lambda r: int(r["index"]))
            return [r["display_name"] for r in rows], {r["mid"]: r["display_name"] for r in rows}
        raise ManifestError(f"{path}: expected columns index,mid,display_name")
    names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    return names, {}


_PATH_ALIASES = ("file", "filename", "file_name", "filepath", "file_path", "video", "video_path", "audio", "wav")


def _path_column_hint(header: Sequence[str]) -> str:
    """`` (rename column 'file' to 'path')`` when the header has a usual other name for the media column."""
    alias = next((h for h in header if h.lower() in _PATH_ALIASES), None)
    return f" (rename column {alias!r} to 'path')" if alias else ""


def _split_labels(value: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in value.split(";") if s.strip())


def _row_from_record(rec: dict[str, object], root: Path, where: str) -> ManifestRow:
    path = rec.get("path")
    if not path:
        raise ManifestError(f"{where}: missing 'path'")
    labels: tuple[str, ...]
    if rec.get("labels") not in (None, ""):
        raw = rec["labels"]
        labels = tuple(str(x) for x in raw) if isinstance(raw, list) else _split_labels(str(raw))
    elif rec.get("label") not in (None, ""):
        labels = (str(rec["label"]).strip(),)
    else:
        labels = ()
    try:
        start = _float_or_none(rec.get("start"))  # type: ignore[arg-type]
        end = _float_or_none(rec.get("end"))  # type: ignore[arg-type]
    except ValueError as e:
        raise ManifestError(f"{where}: bad start/end ({e})") from e
    if start is not None and end is not None and end <= start:
        raise ManifestError(f"{where}: end ({end}) must be after start ({start})")
    text = rec.get("text")
    return ManifestRow(
        path=_resolve(root, str(path)),
        labels=labels,
        start=start,
        end=end,
        text=str(text) if text not in (None, "") else None,
        id=str(rec.get("id") or path),
    )


def _read_csv(path: Path, root: Path) -> list[ManifestRow]:
    with path.open(newline="", encoding="utf-8-sig") as f:  # utf-8-sig: Excel's "CSV UTF-8" starts with a BOM
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if "path" not in header:
            raise ManifestError(
                f"{path}: a CSV manifest needs a header with a 'path' column, got {header}{_path_column_hint(header)}"
            )
        rows = []
        for cells in reader:
            where = f"{path}:{reader.line_num}"
            if not any(c.strip() for c in cells):
                continue  # blank line
            if len(cells) > len(header):
                raise ManifestError(
                    f"{where}: {len(cells)} fields but the header has {len(header)} (quote values that contain commas)"
                )
            rec = {h: c.strip() for h, c in zip(header, cells, strict=False)}
            rows.append(_row_from_record(rec, root, where))
        return rows


def _read_jsonl(path: Path, root: Path) -> list[ManifestRow]:
    rows = []
    with path.open(encoding="utf-8-sig") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path}:{i}: invalid JSON ({e.msg})") from e
            rows.append(_row_from_record(rec, root, f"{path}:{i}"))
    return rows


def _first_existing(root: Path, candidates: Sequence[str]) -> str:
    for c in candidates:
        if (root / c).exists():
            return str(root / c)
    return str(root / candidates[0])


def _read_vggsound(path: Path, root: Path, split: str | None, pattern: str | None, cut: bool) -> list[ManifestRow]:
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        for i, rec in enumerate(csv.reader(f), 1):
            if not rec or rec[0].startswith("#") or (i == 1 and rec[0] in {"ytid", "youtube_id", "# YouTube ID"}):
                continue
            if len(rec) < 3:
                raise ManifestError(f"{path}:{i}: expected ytid,start,label[,split], got {rec}")
            ytid, start_s, label = rec[0].strip(), rec[1].strip(), rec[2].strip()
            row_split = rec[3].strip() if len(rec) > 3 else ""
            if split is not None and row_split != split:
                continue
            start = int(float(start_s))
            patterns = (
                [pattern]
                if pattern
                else [
                    "{ytid}_{start:06d}.mp4",
                    "{ytid}_{start}.mp4",
                    "{ytid}_{start_ms}_{end_ms}.mp4",
                    "{split}/{ytid}_{start:06d}.mp4",
                    "{ytid}.mp4",
                ]
            )
            names = [
                p.format(
                    ytid=ytid,
                    start=start,
                    end=start + 10,
                    start_ms=start * 1000,
                    end_ms=(start + 10) * 1000,
                    split=row_split,
                    label=label,
                )
                for p in patterns
            ]
            file = _first_existing(root, names)
            window = (None, None) if cut else (float(start), float(start + 10))
            rows.append(ManifestRow(file, (label,), window[0], window[1], None, f"{ytid}_{start:06d}"))
    return rows


def _read_kinetics(path: Path, root: Path, split: str | None) -> list[ManifestRow]:
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        need = {"label", "youtube_id", "time_start", "time_end"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise ManifestError(f"{path}: a Kinetics CSV needs columns {sorted(need)}, got {reader.fieldnames}")
        for rec in reader:
            row_split = rec.get("split", "") or ""
            if split is not None and row_split != split:
                continue
            t0, t1 = int(float(rec["time_start"])), int(float(rec["time_end"]))
            name = f"{rec['youtube_id']}_{t0:06d}_{t1:06d}.mp4"
            label = rec["label"].strip().strip('"')
            file = _first_existing(
                root, [name, f"{row_split}/{name}", f"{row_split}/{label}/{name}", f"{label}/{name}"]
            )
            rows.append(ManifestRow(file, (label,), None, None, None, name[:-4]))
    return rows


def _read_ast_json(path: Path, root: Path, classes_path: Path | None) -> tuple[list[ManifestRow], list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: invalid JSON ({e.msg})") from e
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ManifestError(f"{path}: an AST datafile is a JSON object with a 'data' list")
    if classes_path is None:
        cand = path.parent / "class_labels_indices.csv"
        classes_path = cand if cand.exists() else None
    names, mid_to_name = _read_classes_file(classes_path) if classes_path else ([], {})
    rows = []
    for i, item in enumerate(items):
        media = item.get("video_path") or item.get("wav")
        if not media:
            raise ManifestError(f"{path}: item {i} has neither 'wav' nor 'video_path'")
        mids = [m.strip() for m in str(item.get("labels", "")).split(",") if m.strip()]
        labels = tuple(mid_to_name.get(m, m) for m in mids)
        rows.append(
            ManifestRow(_resolve(root, str(media)), labels, None, None, None, str(item.get("video_id") or media))
        )
    return rows, names


# the built-in formats, in the order fmt="auto" tries them
register_manifest_format("csv", detect=lambda path, header: "path" in header)(
    lambda path, root, o: _read_csv(path, root)
)
register_manifest_format("jsonl", detect=lambda path, header: path.suffix == ".jsonl")(
    lambda path, root, o: _read_jsonl(path, root)
)
register_manifest_format("ast-json", detect=lambda path, header: path.suffix == ".json", multilabel=True)(
    lambda path, root, o: _read_ast_json(path, root, o.classes_path)
)
register_manifest_format("kinetics", detect=lambda path, header: {"label", "youtube_id", "time_start"} <= set(header))(
    lambda path, root, o: _read_kinetics(path, root, o.split)
)
register_manifest_format(
    "vggsound",
    detect=lambda path, header: len(header) >= 3 and (header[0] in {"ytid", "# YouTube ID"} or header[1].isdigit()),
)(lambda path, root, o: _read_vggsound(path, root, o.split, o.vggsound_pattern, o.vggsound_cut))


def _detect_format(path: Path) -> str:
    header: list[str] = []
    if path.suffix not in (".json", ".jsonl"):
        with path.open(newline="", encoding="utf-8-sig") as f:
            header = [h.strip() for h in next(csv.reader(f), [])]
    for fmt in _FORMATS.values():
        if fmt.detect is not None and fmt.detect(path, header):
            return fmt.name
    raise ManifestError(
        f"{path}: cannot tell the manifest format from the header {header}: an avformer CSV needs a 'path'"
        f" column{_path_column_hint(header)}; other formats: {', '.join(n for n in _FORMATS if n != 'csv')}"
    )


def read_manifest(
    path: str | Path,
    root: str | Path | None = None,
    *,
    fmt: str = "auto",
    split: str | None = None,
    classes: str | Path | Sequence[str] | None = None,
    vggsound_pattern: str | None = None,
    vggsound_cut: bool = True,
    drop_missing: bool = False,
) -> Manifest:
    """Read a manifest in any supported format.

    Args:
        path: the manifest file.
        root: folder that relative media paths start from (default: the manifest's folder).
        fmt: ``auto`` or a registered format: ``csv``, ``jsonl``, ``vggsound``, ``kinetics``, ``ast-json``, ... (see
            :func:`register_manifest_format`).
        split: keep only rows of this split (VGGSound/Kinetics files carry a split column).
        classes: class order: a list of names, a text file (one a line) or ``class_labels_indices.csv``.
            Default: the sorted set of labels in the file (numbers in numeric order).
        vggsound_pattern: file-name pattern for VGGSound rows (``{ytid}``, ``{start}``, ``{start_ms}``...).
        vggsound_cut: VGGSound files are already cut to the 10-s clip (True) or are full videos (False).
        drop_missing: drop rows whose local file does not exist (default: keep; the dataset counts them).

    Raises:
        ManifestError: unreadable file, unknown format, bad row (the message names file and line).
        FileNotFoundError: the manifest itself does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"manifest not found: {path}")
    try:
        return _read_manifest(path, root, fmt, split, classes, vggsound_pattern, vggsound_cut, drop_missing)
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def _read_manifest(
    path: Path,
    root: str | Path | None,
    fmt: str,
    split: str | None,
    classes: str | Path | Sequence[str] | None,
    vggsound_pattern: str | None,
    vggsound_cut: bool,
    drop_missing: bool,
) -> Manifest:
    root_dir = Path(root) if root is not None else path.parent
    fmt = _detect_format(path) if fmt == "auto" else fmt
    if fmt not in _FORMATS:
        raise ManifestError(f"unknown manifest format {fmt!r}; use one of {', '.join(_FORMATS)}")
    classes_path = Path(classes) if isinstance(classes, (str, Path)) else None
    options = ReadOptions(split, classes_path, vggsound_pattern, vggsound_cut)
    read = _FORMATS[fmt].read(path, root_dir, options)
    rows, class_list = read if isinstance(read, tuple) else (read, [])
    if class_list:  # the format fixed the class order (and read the user's class file itself)
        classes_path = None
    if classes_path is not None:
        class_list = _read_classes_file(classes_path)[0]
    elif classes is not None and not isinstance(classes, (str, Path)):
        class_list = list(classes)
    if not class_list:
        class_list = sorted({lab for r in rows for lab in r.labels}, key=_natural_key)
    multilabel = _FORMATS[fmt].multilabel or any(len(r.labels) > 1 for r in rows)
    if drop_missing:
        rows = [r for r in rows if "://" in r.path or Path(r.path).exists()]
    manifest = Manifest(rows, class_list, multilabel, str(path))
    for r in rows:  # fail at load time, not in the middle of an epoch
        manifest.label_indices(r)
    return manifest


def write_manifest(path: str | Path, rows: Sequence[ManifestRow], root: str | Path | None = None) -> Path:
    """Write rows as an avformer CSV manifest (paths relative to ``root``, default the manifest's folder)."""
    path = Path(path)
    base = Path(root) if root is not None else path.parent
    multi = any(len(r.labels) > 1 for r in rows)
    cols = ["path", "labels" if multi else "label", "start", "end", "text", "id"]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            try:
                p = str(Path(r.path).relative_to(base))
            except ValueError:
                p = r.path
            w.writerow(
                [
                    p,
                    ";".join(r.labels),
                    "" if r.start is None else r.start,
                    "" if r.end is None else r.end,
                    r.text or "",
                    r.id,
                ]
            )
    return path
