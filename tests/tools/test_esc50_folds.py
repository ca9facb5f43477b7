"""tools/esc50_folds.py: 5-fold manifests from ESC-50's meta/esc50.csv, readable by avformer."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from types import ModuleType

from avformer.config import load
from avformer.data.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[2]


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("esc50_folds", ROOT / "tools" / "esc50_folds.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_esc50(root: Path) -> Path:
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    with (root / "meta" / "esc50.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for fold in range(1, 6):
            for cat, target, esc10 in (("dog", 0, "True"), ("rain", 10, "False"), ("clock_tick", 38, "True")):
                w.writerow([f"{fold}-100{target}-A-0.wav", fold, target, cat, esc10, "100", "A"])
    return root


def test_writes_five_folds_that_the_fold_configs_name(tmp_path: Path) -> None:
    tool = _tool()
    root = _fake_esc50(tmp_path / "ESC-50-master")
    assert tool.main([str(root), str(tmp_path / "out")]) == 0
    for k in range(1, 6):
        cfg = load(ROOT / "configs" / "experiment" / f"esc50_fold{k}.yaml")
        train = read_manifest(tmp_path / "out" / Path(cfg.train_manifest).name)
        val = read_manifest(tmp_path / "out" / Path(cfg.val_manifest).name)
        assert len(train) == 12 and len(val) == 3
        assert {Path(r.path).name[0] for r in val} == {str(k)}
        assert str(k) not in {Path(r.path).name[0] for r in train}
        assert train.classes == ["clock_tick", "dog", "rain"] and not train.multilabel
        assert all(Path(r.path).is_absolute() and Path(r.path).parent == (root / "audio").resolve() for r in val)


def test_esc10_subset_and_a_clear_error_for_a_wrong_folder(tmp_path: Path) -> None:
    tool = _tool()
    root = _fake_esc50(tmp_path / "esc")
    assert tool.main([str(root), str(tmp_path / "out"), "--esc10"]) == 0
    assert read_manifest(tmp_path / "out" / "fold1_val.csv").classes == ["clock_tick", "dog"]
    assert tool.main([str(tmp_path / "nowhere"), str(tmp_path / "o")]) == 2
