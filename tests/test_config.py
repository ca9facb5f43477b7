"""Config system: strict loading, overrides, YAML round trip, inheritance."""

from __future__ import annotations

from pathlib import Path

import pytest

from avformer.config import (
    ConfigError,
    ExperimentConfig,
    ModelSpec,
    OptimConfig,
    TaskSpec,
    TrainConfig,
    apply_overrides,
    dump,
    from_dict,
    load,
    loads,
    stage_config,
    to_dict,
)
from avformer.data.dataset import DataConfig
from avformer.data.video import VideoTransformConfig


def _cfg() -> ExperimentConfig:
    return ExperimentConfig(
        name="mmt_tiny",
        model=ModelSpec("mat_tiny", {"depths": [1, 2], "num_classes": 5, "qkv_bias": True}),
        data=DataConfig(modalities=("audio",), clip_seconds=2.5, video=VideoTransformConfig(size=64, short_side=72)),
        optim=OptimConfig(lr=3e-4, betas=(0.9, 0.95), warmup_steps=10, grad_clip=1.0, accum_steps=2),
        train=TrainConfig(epochs=3, precision="bf16", ema_decay=0.999, resume=None, steps_per_epoch=7),
        train_manifest="train.csv",
    )


def test_dump_load_round_trip(tmp_path: Path) -> None:
    for cfg in (_cfg(), ExperimentConfig(name="x", model=ModelSpec("m"))):
        text = dump(cfg)
        assert loads(text) == cfg
        (tmp_path / "c.yaml").write_text(text)
        assert load(tmp_path / "c.yaml") == cfg
        assert from_dict(to_dict(cfg)) == cfg


def test_types_are_converted() -> None:
    cfg = _cfg()
    assert cfg.model.overrides["depths"] == (1, 2)  # YAML lists become tuples in free-form overrides
    loaded = loads("name: a\nmodel: {name: m}\noptim: {lr: 1e-3, betas: [0.8, 0.9]}\ntrain: {ema_decay: 0}\n")
    assert loaded.optim.lr == 1e-3 and isinstance(loaded.optim.lr, float)  # YAML 1.1 reads 1e-3 as a string
    assert loaded.optim.betas == (0.8, 0.9)
    assert isinstance(loaded.train.ema_decay, float)  # int accepted for float
    assert loaded.data == DataConfig()  # omitted sections take their defaults


def test_unknown_nested_key_names_path_and_valid_keys() -> None:
    data = to_dict(_cfg())
    data["data"]["video"]["frames"] = 8
    with pytest.raises(ConfigError) as err:
        from_dict(data)
    msg = str(err.value)
    assert "'data.video.frames'" in msg
    assert "num_frames" in msg and "short_side" in msg  # lists the valid keys there
    with pytest.raises(ConfigError, match=r"did you mean 'data\.video\.size'"):
        apply_overrides(_cfg(), ["data.video.sise=3"])
    with pytest.raises(ConfigError, match=r"unknown key 'train\.lr'.*'optim\.lr'"):
        apply_overrides(_cfg(), ["train.lr=3e-4"])
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        loads("name: a\nmodel: {name: m}\nbogus: 1\n")


@pytest.mark.parametrize(
    ("yaml_text", "pattern"),
    [
        ("train: {epochs: ten}", r"train\.epochs: expected int, got str"),
        ("train: {epochs: true}", r"train\.epochs: expected int, got bool"),
        ("train: {epochs: 2.5}", r"train\.epochs: expected int, got float"),
        ("optim: {betas: [0.9]}", r"optim\.betas: expected 2 values"),
        ("optim: {betas: [0.9, x]}", r"optim\.betas\[1\]: expected float"),
        ("train: {precision: fp16}", r"train: precision must be one of .*'fp16'"),
        ("optim: {lr: -1}", r"optim: lr must be > 0"),
        ("data: {modalities: [smell]}", r"data: modalities must be"),
        ("train: {steps_per_epoch: abc}", r"train\.steps_per_epoch: expected int \| None"),
        ("train: 3", r"train: expected a mapping of TrainConfig"),
    ],
)
def test_type_and_value_errors(yaml_text: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        loads("name: a\nmodel: {name: m}\n" + yaml_text)


def test_missing_required_key() -> None:
    with pytest.raises(ConfigError, match=r"missing key 'model\.name'"):
        loads("name: a\nmodel: {overrides: {depth: 2}}\n")
    with pytest.raises(ConfigError, match=r"missing key 'model'"):
        loads("name: a\n")


def test_overrides() -> None:
    cfg = apply_overrides(
        _cfg(),
        [
            "optim.lr=3e-4",
            "model.overrides.depth=2",
            "data.video.size=48",
            "train.resume=auto",
            "train.steps_per_epoch=null",
            "data.modalities=[video, audio]",
            "data.video={fps: 4, num_frames: 8}",  # a mapping merges: size stays 48
            "name=run_2",
        ],
    )
    assert cfg.optim.lr == 3e-4
    assert cfg.model.overrides == {"depths": (1, 2), "num_classes": 5, "qkv_bias": True, "depth": 2}
    assert cfg.data.video == VideoTransformConfig(size=48, short_side=72, fps=4.0, num_frames=8)
    assert cfg.train.resume == "auto" and cfg.train.steps_per_epoch is None
    assert cfg.data.modalities == ("video", "audio")
    assert cfg.name == "run_2"
    assert loads(dump(cfg)) == cfg
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides(cfg, ["optim.lr"])
    with pytest.raises(ConfigError, match=r"'train\.epochs' is a value, not a section"):
        apply_overrides(cfg, ["train.epochs.x=1"])
    with pytest.raises(ConfigError, match=r"override 'data\.video\.size=0'.*size"):
        apply_overrides(cfg, ["data.video.size=0"])


def test_inherit_deep_merges(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        "name: base\nmodel: {name: mat_tiny, overrides: {depth: 2}}\n"
        "optim: {lr: 1.0e-3, weight_decay: 0.1}\ntrain: {epochs: 5, batch_size: 4}\n"
    )
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "run.yaml").write_text(
        "inherit: ../base.yaml\nname: run\noptim: {lr: 2.0e-4}\nmodel: {overrides: {num_classes: 3}}\n"
    )
    cfg = load(tmp_path / "exp" / "run.yaml")
    assert cfg.name == "run"
    assert cfg.optim.lr == 2e-4 and cfg.optim.weight_decay == 0.1
    assert cfg.train.epochs == 5 and cfg.train.batch_size == 4
    assert cfg.model == ModelSpec("mat_tiny", {"depth": 2, "num_classes": 3})
    (tmp_path / "a.yaml").write_text("inherit: b.yaml\n")
    (tmp_path / "b.yaml").write_text("inherit: a.yaml\n")
    with pytest.raises(ConfigError, match="inheritance cycle"):
        load(tmp_path / "a.yaml")
    (tmp_path / "bad.yaml").write_text("inherit: base.yaml\ntrain: {epoch: 3}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'train\.epoch'"):
        load(tmp_path / "bad.yaml")


def test_fsdp_with_ema_is_a_config_error_not_a_crash_inside_training() -> None:
    with pytest.raises(ConfigError, match="ema_decay > 0 is not supported with strategy=fsdp"):
        apply_overrides(_cfg(), ["train.strategy=fsdp", "train.ema_decay=0.999"])
    assert apply_overrides(_cfg(), ["train.ema_decay=0", "train.strategy=fsdp"]).train.strategy == "fsdp"


def test_old_loss_overrides_set_task_options_on_a_new_form_config() -> None:
    cfg = loads("name: t\nmodel: {name: mmt_tiny}\ntask: {name: av_classification, options: {avc_weight: 0.1}}\n")
    out = apply_overrides(cfg, ["loss.modality_ce_weight=1.0", "task.options.imc_weight=0.2"])
    assert out.task is not None and out.task.options == {
        "avc_weight": 0.1,
        "modality_ce_weight": 1.0,
        "imc_weight": 0.2,
    }
    assert out.loss is None
    assert "loss" not in dump(out) and loads(dump(out)) == out


def test_old_form_configs_still_load_with_their_loss_section() -> None:
    cfg = loads("name: t\nmodel: {name: mmt_tiny}\nloss: {avc_weight: 0.1}\n")
    assert cfg.task is None and cfg.loss is not None and cfg.loss.avc_weight == 0.1
    with pytest.raises(ConfigError, match=r"unknown key 'loss\.avc_wieght'.*did you mean 'loss\.avc_weight'"):
        loads("name: t\nmodel: {name: mmt_tiny}\nloss: {avc_wieght: 0.1}\n")


def test_inherit_keeps_task_options_only_for_the_same_task(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        "name: base\nmodel: {name: mat_tiny}\ntask: {name: av_classification, options: {avc_weight: 0.3}}\n"
    )
    (tmp_path / "same.yaml").write_text("inherit: base.yaml\ntask: {options: {imc_weight: 0.2}}\n")
    same = load(tmp_path / "same.yaml").task
    assert same.name == "av_classification" and same.options == {"avc_weight": 0.3, "imc_weight": 0.2}
    (tmp_path / "other.yaml").write_text("inherit: base.yaml\ntask: {name: vatt_pretrain}\n")
    assert load(tmp_path / "other.yaml").task.options == {}  # avc_weight belongs to av_classification
    (tmp_path / "staged.yaml").write_text(
        "inherit: base.yaml\nstages:\n  - {name: a}\n  - {name: b, overrides: {task: {name: vatt_pretrain}}}\n"
    )
    staged = load(tmp_path / "staged.yaml")
    assert stage_config(staged, 0).task.options == {"avc_weight": 0.3}
    assert stage_config(staged, 1).task == TaskSpec("vatt_pretrain", {})


def test_a_recipe_copied_elsewhere_still_finds_what_it_inherits(tmp_path: Path) -> None:
    """``inherit:`` is relative to the file; a copy of a built-in recipe falls back to the built-in folders."""
    from avformer.config import BUILTIN_CONFIGS, load

    copy = tmp_path / "myproj" / "my.yaml"
    copy.parent.mkdir()
    copy.write_text((BUILTIN_CONFIGS / "experiment" / "vggsound_mmt_base.yaml").read_text())
    assert load(copy) == load(BUILTIN_CONFIGS / "experiment" / "vggsound_mmt_base.yaml")
    (tmp_path / "myproj" / "child.yaml").write_text("inherit: nowhere/base.yaml\nname: x\n")
    with pytest.raises(ConfigError, match=r"inherit: nowhere/base.yaml: no such file beside the config"):
        load(tmp_path / "myproj" / "child.yaml")
