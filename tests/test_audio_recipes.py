"""The audio recipes keep their promises (tests/test_configs.py loads every YAML and builds its model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from avformer.config import from_dict, load, to_dict
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
    assert [c.val_manifest for c in cfgs] == [f"data/esc50/fold{k}_val.csv" for k in range(1, 6)]
    assert len({c.train.out_dir for c in cfgs}) == 5
    strip = ("name", "train_manifest", "val_manifest", "train.out_dir")
    assert all(_without(to_dict(c), *strip) == _without(to_dict(cfgs[0]), *strip) for c in cfgs)


def test_audioset_recipe_is_multilabel_map() -> None:
    cfg = load(EXPERIMENT / "audioset_mat_small.yaml")
    assert cfg.train.best_metric == "mAP" and cfg.train.best_mode == "max"
    assert cfg.classes is not None and cfg.classes.endswith("class_labels_indices.csv")
