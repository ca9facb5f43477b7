"""Weights trained elsewhere, as avformer models: a Hugging Face AST folder and a torchvision MViTv2 state dict.

Each converter reads its source, renames the tensors with the family's own mapping (it lives beside the model:
:func:`avformer.models.vit.convert_transformers_ast_state_dict`,
:func:`avformer.models.multiscale.convert_torchvision_mvit_state_dict`), builds the registered variant with the
source's geometry, checks that every tensor fits it (no missing or unexpected key, no shape mismatch) and returns a
:class:`~avformer.models.loading.LoadedRun` with the config that feeds it as its authors did (AST: Kaldi fbank at
16 kHz, AudioSet mean/std; MViTv2-S: 16 frames at 7.5 fps, short side 256, centre crop 224, Kinetics mean/std).
``avformer convert`` writes that run as an export folder (:func:`avformer.models.loading.export_run`).

Sources are untrusted: ``.bin`` / ``.pth`` / ``.pt`` files are read with ``torch.load(weights_only=True)`` (a pickle
that would run code is refused), ``.safetensors`` with the safetensors library, JSON with ``json``; a path that is
not a regular file (a folder, a FIFO, a device) is refused. Every problem is one :class:`UsageError` line.

The transformers config -> :class:`~avformer.models.vit_config.ASTConfig` mapping is :func:`ast_overrides_from_hf`
(the parity test tests/models/test_parity_transformers.py builds its models with it).
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from avformer.config import ExperimentConfig, ModelSpec
from avformer.data.audio import AudioFeatureConfig
from avformer.data.config import DataConfig
from avformer.data.video import VideoTransformConfig
from avformer.models.loading import LoadedRun, build_model, state_dict_mismatch
from avformer.models.multiscale import convert_torchvision_mvit_state_dict
from avformer.models.vit import convert_transformers_ast_state_dict
from avformer.utils.errors import UsageError

__all__ = [
    "CONVERTERS",
    "ast_overrides_from_hf",
    "convert_hf_ast",
    "convert_torchvision_mvit",
    "read_classes_file",
    "read_state_dict",
]

_MAX_JSON_BYTES = 10_000_000  # a config.json is a few kB; id2label of AudioSet ~30 kB

# transformers' ASTConfig defaults: save_pretrained may leave out a value equal to them
_HF_AST_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
    "patch_size": 16,
    "qkv_bias": True,
    "frequency_stride": 10,
    "time_stride": 10,
    "max_length": 1024,
    "num_mel_bins": 128,
}


def _regular_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise UsageError(f"{path}: no such {what}")
    if not path.is_file():
        raise UsageError(f"{path}: not a regular file (a {what} must be one)")
    return path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: ``.safetensors``, or a ``torch.save`` file read with ``weights_only=True``.

    A file holding ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped once.

    Raises:
        UsageError: not a regular file, unreadable, refused (objects other than tensors), or not a state dict.
    """
    path = _regular_file(Path(path), "weights file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise UsageError(f"{path}: not a readable safetensors file ({' '.join(str(e).split())})") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found is None:
            raise UsageError(f"{path}: not a readable torch weights file (a damaged or foreign pickle)") from e
        raise UsageError(
            f"{path}: refused: it holds objects other than tensors (it would call {found.group(1)}; weights-only "
            "loading never runs a file's code)"
        ) from e
    except Exception as e:  # RuntimeError / EOFError / ... for a damaged or foreign file
        raise UsageError(f"{path}: not a readable torch weights file ({type(e).__name__})") from e
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping) and len(obj) <= 4:
                obj = obj[key]
                break
    if (
        not isinstance(obj, Mapping)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise UsageError(f"{path}: not a state dict (a mapping of tensor names to tensors)")
    return dict(obj)


def _read_json(path: Path) -> dict[str, Any]:
    _regular_file(path, "config file")
    if path.stat().st_size > _MAX_JSON_BYTES:
        raise UsageError(f"{path}: {path.stat().st_size} bytes, too large for a config file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not a JSON file ({e})") from e
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_classes_file(path: str | Path) -> list[str]:
    """Class names, one a line (blank lines at the end ignored)."""
    path = _regular_file(Path(path), "classes file")
    try:
        names = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text") from e
    if not names or any(not n.strip() for n in names):
        raise UsageError(f"{path}: expected one non-empty class name a line")
    return names


def ast_overrides_from_hf(config: Mapping[str, Any]) -> dict[str, Any]:
    """``ast_base`` overrides that reproduce a transformers ``ASTConfig`` (``config.json`` as a dict).

    Raises:
        ValueError: not an AST config, or an activation other than exact GELU.
    """
    c = {**_HF_AST_DEFAULTS, **config}
    if c.get("model_type") != "audio-spectrogram-transformer":
        raise ValueError(f"model_type {c.get('model_type')!r} is not 'audio-spectrogram-transformer'")
    if c["hidden_act"] != "gelu":
        raise ValueError(f"hidden_act {c['hidden_act']!r}: only exact GELU ('gelu') is supported")
    return {
        "embed_dim": int(c["hidden_size"]),
        "depth": int(c["num_hidden_layers"]),
        "num_heads": int(c["num_attention_heads"]),
        "mlp_ratio": c["intermediate_size"] / c["hidden_size"],
        "qkv_bias": bool(c["qkv_bias"]),
        "norm_eps": float(c["layer_norm_eps"]),
        "num_mel_bins": int(c["num_mel_bins"]),
        "num_frames": int(c["max_length"]),
        "patch_size": int(c["patch_size"]),
        "freq_stride": int(c["frequency_stride"]),
        "time_stride": int(c["time_stride"]),
    }


def _checked_classes(given: list[str] | None, num_outputs: int, default: list[str], source: str) -> list[str]:
    if given is None:
        return default
    if len(given) != num_outputs:
        raise UsageError(f"--classes has {len(given)} names; the model of {source} has {num_outputs} outputs")
    return given


def _fitted(spec: ModelSpec, classes: list[str], state: dict[str, torch.Tensor], source: Path) -> torch.nn.Module:
    try:
        model = build_model(spec, len(classes) if classes else None)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{source}: its geometry does not make a valid {spec.name!r}: {e}") from e
    problem = state_dict_mismatch(model, state)
    if problem:
        raise UsageError(f"{source}: the weights do not fit {spec.name!r}: {problem}")
    model.load_state_dict(state)
    return model.eval()


def convert_hf_ast(src: str | Path, classes: list[str] | None = None) -> LoadedRun:
    """A folder written by ``ASTForAudioClassification.save_pretrained`` (or ``ASTModel``'s): ``config.json`` and
    ``model.safetensors`` or ``pytorch_model.bin``; ``preprocessor_config.json`` beside them sets the
    normalisation (else transformers' AudioSet defaults, ours too).

    Args:
        src: the folder.
        classes: class names in logit order (default: the config's ``id2label``).
    """
    folder = Path(src)
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder (a Hugging Face model folder holds config.json and the weights)")
    cfg_json = _read_json(folder / "config.json")
    try:
        overrides = ast_overrides_from_hf(cfg_json)
    except (ValueError, TypeError, KeyError) as e:
        raise UsageError(f"{folder / 'config.json'}: {e}") from e
    weights = next((folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).exists()), None)
    if weights is None:
        sharded = any((folder / n).exists() for n in ("model.safetensors.index.json", "pytorch_model.bin.index.json"))
        why = "sharded weights are not supported" if sharded else "no model.safetensors or pytorch_model.bin"
        raise UsageError(f"{folder}: {why}")
    try:
        state = convert_transformers_ast_state_dict(read_state_dict(weights))
    except KeyError as e:
        raise UsageError(f"{weights}: {e.args[0] if e.args else e}") from e
    head = state.get("head.weight")
    num_outputs = 0 if head is None else int(head.shape[0])
    id2label = cfg_json.get("id2label") or {}
    try:
        labels = [str(id2label[k]) for k in sorted(id2label, key=int)] if num_outputs else []
    except (ValueError, TypeError) as e:
        raise UsageError(f"{folder / 'config.json'}: id2label keys must be integers") from e
    if num_outputs and len(labels) != num_outputs:
        labels = [f"LABEL_{i}" for i in range(num_outputs)]
    labels = _checked_classes(classes, num_outputs, labels, str(folder))

    pre = folder / "preprocessor_config.json"
    pp = _read_json(pre) if pre.exists() else {}
    normalise = pp.get("do_normalize", True)
    audio = AudioFeatureConfig(
        sample_rate=int(pp.get("sampling_rate", 16000)),
        num_mel_bins=overrides["num_mel_bins"],
        num_frames=overrides["num_frames"],
        **({"mean": float(pp["mean"]), "std": float(pp["std"])} if "mean" in pp and "std" in pp else {}),
        **({} if normalise else {"mean": None, "std": None}),
    )
    data = DataConfig(
        modalities=("audio",), clip_seconds=overrides["num_frames"] * audio.frame_shift_ms / 1000, audio=audio
    )
    spec = ModelSpec("ast_base", overrides)
    model = _fitted(spec, labels, state, weights)
    cfg = ExperimentConfig(name=folder.resolve().name or "hf_ast", model=spec, data=data)
    return LoadedRun(cfg, model, labels, weights, None, spec)


def convert_torchvision_mvit(src: str | Path, classes: list[str] | None = None) -> LoadedRun:
    """A torchvision ``mvit_v2_s`` state dict (``.pth``, e.g. ``mvit_v2_s-ae3be167.pth`` or
    ``mvit_v2_s().state_dict()`` saved with ``torch.save``) as ``mvit_v2_s_16x4``.

    Args:
        src: the file.
        classes: class names in logit order (default: ``class_0``, ``class_1``, ...; torchvision's Kinetics-400
            names are in ``torchvision.models.video.MViT_V2_S_Weights.KINETICS400_V1.meta["categories"]``).
    """
    path = Path(src)
    raw = read_state_dict(path)
    try:
        state = convert_torchvision_mvit_state_dict(raw)
    except ValueError as e:
        raise UsageError(f"{path}: {e}") from e
    head = state.get("head.weight")
    if head is None or head.ndim != 2:
        raise UsageError(f"{path}: no classifier (head.1.weight): not a torchvision mvit_v2_s state dict")
    num_outputs = int(head.shape[0])
    labels = _checked_classes(classes, num_outputs, [f"class_{i}" for i in range(num_outputs)], str(path))
    spec = ModelSpec("mvit_v2_s_16x4", {})
    model = _fitted(spec, labels, state, path)
    video = VideoTransformConfig(num_frames=16, fps=7.5, size=224, short_side=256)  # Kinetics mean/std: the default
    cfg = ExperimentConfig(name=path.stem, model=spec, data=DataConfig(modalities=("video",), video=video))
    return LoadedRun(cfg, model, labels, path, None, spec)


# --from name -> converter(source, classes)
CONVERTERS: dict[str, Callable[[str | Path, list[str] | None], LoadedRun]] = {
    "hf-ast": convert_hf_ast,
    "torchvision-mvit": convert_torchvision_mvit,
}
