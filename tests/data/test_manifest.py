from __future__ import annotations

import json
from pathlib import Path

import pytest

from avformer.data.manifest import ManifestError, ManifestRow, read_manifest, write_manifest
from tests._paths import shared_path


def _touch(root: Path, *names: str) -> None:
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


def test_csv_single_label_paths_and_classes(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("path,label,start,end\na/1.mp4,10,,\nb.mp4,2,1.5,3\n/abs/c.mp4,cat,,\n")
    m = read_manifest(tmp_path / "m.csv")
    assert [r.path for r in m] == [str(tmp_path / "a/1.mp4"), str(tmp_path / "b.mp4"), "/abs/c.mp4"]
    assert m.classes == ["2", "10", "cat"]  # numbers in numeric order, then names
    assert not m.multilabel
    assert m[1].start == 1.5 and m[1].end == 3.0 and m[0].start is None
    assert m.label_indices(m[0]) == [1]
    assert m[0].id == "a/1.mp4"


def test_csv_multilabel_and_root(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text('path,labels\nx.wav,"dog;bark"\ny.wav,dog\n')
    m = read_manifest(tmp_path / "m.csv", root="/data")
    assert m.multilabel and m.classes == ["bark", "dog"]
    assert m[0].labels == ("dog", "bark") and m[0].path == "/data/x.wav"


def test_jsonl_with_text(tmp_path: Path) -> None:
    lines = [{"path": "a.mp4", "label": "x", "text": "a caption"}, {"path": "b.mp4"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    m = read_manifest(tmp_path / "m.jsonl")
    assert m[0].text == "a caption" and m[1].labels == () and m[1].label is None


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("file,label\na,b\n", "'path' column"),
        ("path,label,start,end\na,b,3,1\n", "end"),
        ("path,label,start\na,b,x\n", "start/end"),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(ManifestError, match=match):
        read_manifest(tmp_path / "m.csv")


def test_label_outside_given_classes_fails_at_load(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("path,label\na,z\n")
    with pytest.raises(ManifestError, match="'z'"):
        read_manifest(tmp_path / "m.csv", classes=["a", "b"])


def test_missing_manifest() -> None:
    with pytest.raises(FileNotFoundError):
        read_manifest("/nonexistent/m.csv")


def test_vggsound_csv_without_header(tmp_path: Path) -> None:
    (tmp_path / "vggsound.csv").write_text(
        "---g-f_I2yQ,1,people marching,test\n"
        "--0PQM4-hqg,30,waterfall burbling,train\n"
        "--56QUhyDQM,185,playing tennis,train\n"
    )
    _touch(tmp_path, "--0PQM4-hqg_000030.mp4", "--56QUhyDQM_185000_195000.mp4")
    m = read_manifest(tmp_path / "vggsound.csv", split="train")
    assert len(m) == 2
    assert m[0].path == str(tmp_path / "--0PQM4-hqg_000030.mp4")
    assert m[1].path == str(tmp_path / "--56QUhyDQM_185000_195000.mp4")  # the other common naming
    assert m.classes == ["playing tennis", "waterfall burbling"]
    full = read_manifest(tmp_path / "vggsound.csv", fmt="vggsound", vggsound_cut=False)
    assert (full[0].start, full[0].end) == (1.0, 11.0)


def test_kinetics_csv_layouts(tmp_path: Path) -> None:
    (tmp_path / "k.csv").write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,0347ZoDXyP0,14,24,train\n"
        '"air drumming",--nQbRBEz2s,104,114,val\n'
    )
    _touch(tmp_path, "train/abseiling/0347ZoDXyP0_000014_000024.mp4", "val/--nQbRBEz2s_000104_000114.mp4")
    m = read_manifest(tmp_path / "k.csv")
    assert Path(m[0].path).exists() and Path(m[1].path).exists()
    assert m[1].labels == ("air drumming",)
    assert len(read_manifest(tmp_path / "k.csv", split="val")) == 1


def test_ast_json_multilabel_with_class_indices(tmp_path: Path) -> None:
    (tmp_path / "class_labels_indices.csv").write_text(
        'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/05zppz,"Male speech, man speaking"\n2,/m/0ytgt,Dog\n'
    )
    data = {"data": [{"wav": "/d/a.wav", "labels": "/m/09x0r,/m/05zppz"}, {"wav": "b.flac", "labels": "/m/0ytgt"}]}
    (tmp_path / "train.json").write_text(json.dumps(data))
    m = read_manifest(tmp_path / "train.json")
    assert m.multilabel and m.classes == ["Speech", "Male speech, man speaking", "Dog"]
    assert m.label_indices(m[0]) == [0, 1] and m.label_indices(m[1]) == [2]
    assert m[1].path == str(tmp_path / "b.flac")


def test_write_then_read_roundtrip(tmp_path: Path) -> None:
    rows = [
        ManifestRow(str(tmp_path / "a.mp4"), ("x",), 0.5, 1.5, "hi", "a"),
        ManifestRow(str(tmp_path / "b.mp4"), ("y",)),
    ]
    write_manifest(tmp_path / "m.csv", rows)
    m = read_manifest(tmp_path / "m.csv")
    assert m[0] == rows[0]
    assert m[1].path == rows[1].path and m[1].labels == ("y",)


def test_av_digits_manifest() -> None:
    csv_path = shared_path("av-digits", "train.csv")
    m = read_manifest(csv_path)
    assert len(m) == 2700 and m.classes == [str(i) for i in range(10)]
    assert Path(m[0].path).exists()


def test_csv_bom_crlf_whitespace_and_quoted_commas(tmp_path: Path) -> None:
    # Excel's "CSV UTF-8": BOM, CRLF line endings; hand-edited: spaces around cells, a blank line
    content = '\ufeffpath , label, start\r\n a.mp4 ,"dog, barking", 1.5 \r\n\r\nb.mp4,cat,\r\n'
    (tmp_path / "m.csv").write_bytes(content.encode("utf-8"))
    m = read_manifest(tmp_path / "m.csv")
    assert [r.path for r in m] == [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]
    assert m[0].labels == ("dog, barking",) and m[0].start == 1.5 and m[0].id == "a.mp4"
    assert m.classes == ["cat", "dog, barking"]


def test_jsonl_with_bom(tmp_path: Path) -> None:
    (tmp_path / "m.jsonl").write_bytes('\ufeff{"path": "a.mp4", "label": "x"}\r\n'.encode())
    assert read_manifest(tmp_path / "m.jsonl")[0].label == "x"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("path,label\na.mp4,dog, barking\n", r"m.csv:2: 3 fields but the header has 2 \(quote"),
        ("path,label,start\na.mp4,b,nan\n", "m.csv:2: bad start/end"),
        ("path,label,start\na.mp4,b,-1\n", "bad start/end"),
        ("file,modality,label\na.mp4,video,b\n", "rename column 'file' to 'path'"),
    ],
)
def test_csv_rows_that_would_be_misread(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(ManifestError, match=match):
        read_manifest(tmp_path / "m.csv")


def test_non_utf8_manifest_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_bytes("path,label\ncafé.mp4,x\n".encode("latin-1"))
    with pytest.raises(ManifestError, match=r"m\.csv: not UTF-8"):
        read_manifest(tmp_path / "m.csv")


def test_a_format_registered_outside_the_package_is_detected_and_read(tmp_path: Path) -> None:
    """A dataset's own index (here: ``file;category;fold``) becomes a manifest format with one function."""
    from avformer.data import manifest as manifest_module
    from avformer.data.manifest import ManifestRow, ReadOptions, register_manifest_format

    def detect(path: Path, header: list[str]) -> bool:
        return header[:1] == ["file;category;fold"]

    @register_manifest_format("test_semicolon", detect=detect)
    def read(path: Path, root: Path, options: ReadOptions) -> list[ManifestRow]:
        rows = [line.split(";") for line in path.read_text().splitlines()[1:]]
        keep = [r for r in rows if options.split is None or r[2] == options.split]
        return [ManifestRow(path=str(root / f), labels=(c,), id=f) for f, c, _ in keep]

    try:
        index = tmp_path / "index.txt"
        index.write_text("file;category;fold\na.wav;dog;1\nb.wav;rain;2\nc.wav;dog;2\n")
        m = read_manifest(index, split="2")
        assert [r.id for r in m] == ["b.wav", "c.wav"] and m.classes == ["dog", "rain"]
        assert m[0].path == str(tmp_path / "b.wav")
        assert "test_semicolon" in manifest_module.manifest_formats()
    finally:
        manifest_module._FORMATS.pop("test_semicolon", None)
