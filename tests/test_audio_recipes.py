"""The audio recipes keep their promises (tests/test_configs.py loads every YAML and builds its model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from avformer.config import apply_overrides, from_dict, load, to_dict
from avformer.data.manifest import ManifestError, read_manifest
from avformer.models.loading import build_model

EXPERIMENT = Path(__file__).resolve().parents[1] / "configs" / "experiment"


def _without(d: dict, *keys: str) -> dict:
    d = dict(d)
    for k in keys:
        section, _, leaf = k.partition(".")
        if leaf:
            d[section] = {kk: vv for kk, vv in d[section].items() if kk != leaf}
        else:
            d.pop(section)
    return d


def test_speech_commands_recipes_differ_only_in_the_model() -> None:
    mat = load(EXPERIMENT / "speech_commands_mat_tiny.yaml")
    ast = load(EXPERIMENT / "speech_commands_ast_tiny.yaml")
    assert mat.model.name == "mat_tiny" and ast.model.name == "ast_tiny"
    assert _without(to_dict(mat), "name", "model", "train.out_dir") == _without(
        to_dict(ast), "name", "model", "train.out_dir"
    )
    # both models read the recipe's input
    f, t = mat.data.audio.num_mel_bins, mat.data.audio.num_frames
    assert mat.model.overrides["input_size"] == (f, t)
    assert (ast.model.overrides["num_mel_bins"], ast.model.overrides["num_frames"]) == (f, t)
    assert mat.data.modalities == ("audio",) and mat.train_manifest and mat.val_manifest


def test_speech_commands_ast_matches_mat_tiny_depth_and_parameters() -> None:
    """The AST is given mat_tiny's depth and parameter budget (see the recipe's comment)."""
    mat = load(EXPERIMENT / "speech_commands_mat_tiny.yaml")
    ast = load(EXPERIMENT / "speech_commands_ast_tiny.yaml")
    with torch.device("meta"):
        m, a = build_model(mat.model, 12), build_model(ast.model, 12)
    assert len(a.blocks) == len(m.blocks)
    pm, pa = (sum(p.numel() for p in x.parameters()) for x in (m, a))
    assert abs(pa - pm) / pm < 0.02


@pytest.mark.parametrize(
    "name", ["speech_commands_base", "speech_commands_mat_tiny", "esc50_fold1", "audioset_mat_small"]
)
def test_audio_recipes_have_dataset_stats_specaugment_and_mixup(name: str) -> None:
    data = yaml.safe_load((EXPERIMENT / f"{name}.yaml").read_text())
    cfg = (
        from_dict({"model": {"name": "mat_tiny"}, **data})
        if "inherit" not in data
        else load(EXPERIMENT / f"{name}.yaml")
    )
    assert cfg.data.modalities == ("audio",)
    assert cfg.data.audio.mean is not None and cfg.data.audio.std is not None
    assert cfg.data.spec_augment.enabled and cfg.task is not None and cfg.task.options["mixup_alpha"] > 0


def test_esc50_folds_are_five_and_differ_only_in_fold() -> None:
    cfgs = [load(EXPERIMENT / f"esc50_fold{k}.yaml") for k in range(1, 6)]
    assert [(c.train_split, c.val_split) for c in cfgs] == [(f"except-fold{k}", f"fold{k}") for k in range(1, 6)]
    assert len({c.train.out_dir for c in cfgs}) == 5
    strip = ("name", "train_split", "val_split", "train.out_dir")
    assert all(_without(to_dict(c), *strip) == _without(to_dict(cfgs[0]), *strip) for c in cfgs)


def test_audioset_recipe_is_multilabel_map() -> None:
    cfg = load(EXPERIMENT / "audioset_mat_small.yaml")
    assert cfg.train.best_metric == "mAP" and cfg.train.best_mode == "max"
    assert cfg.classes is not None and cfg.classes.endswith("class_labels_indices.csv")


def _fake_esc50(root: Path) -> Path:
    """The ESC-50 layout: meta/esc50.csv (2 clips per fold, one of them ESC-10) and audio/ beside it."""
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in range(1, 6):
        lines += [f"{fold}-a.wav,{fold},0,dog,True,x,A", f"{fold}-b.wav,{fold},1,rain,False,x,A"]
    (root / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n")
    for line in lines[1:]:
        (root / "audio" / line.split(",")[0]).touch()  # present (a manifest of only missing files is refused)
    return root / "meta" / "esc50.csv"


def test_esc50_reads_as_it_ships_and_splits_by_fold(tmp_path: Path) -> None:
    meta = _fake_esc50(tmp_path / "ESC-50-master")
    val = read_manifest(meta, split="fold2")
    assert [r.id for r in val] == ["2-a.wav", "2-b.wav"] and val.classes == ["dog", "rain"]
    assert val[0].path == str(tmp_path / "ESC-50-master" / "audio" / "2-a.wav")
    train = read_manifest(meta, split="except-fold2")
    assert len(train) == 8 and not {r.id for r in train} & {r.id for r in val}
    assert [r.id for r in read_manifest(meta, split="esc10:except-fold2")] == [f"{k}-a.wav" for k in (1, 3, 4, 5)]
    assert len(read_manifest(meta)) == 10
    with pytest.raises(ManifestError, match="foldK or except-foldK"):
        read_manifest(meta, split="fold9")


def test_an_esc50_fold_config_builds_its_split_data(tmp_path: Path) -> None:
    from avformer.train.experiment import load_data

    meta = _fake_esc50(tmp_path / "ESC-50-master")
    cfg = apply_overrides(load(EXPERIMENT / "esc50_fold3.yaml"), [f"train_manifest={meta}", f"val_manifest={meta}"])
    data = load_data(cfg)
    assert data.train is not None and data.val is not None
    assert {r.id[0] for r in data.val} == {"3"} and "3" not in {r.id[0] for r in data.train}
    assert data.classes == ["dog", "rain"]
