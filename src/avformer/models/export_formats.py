"""ONNX and TorchScript forms of a trained classifier, and the inference backends that run them.

``avformer export RUN --out DIR --format torchscript|onnx`` writes, beside ``config.yaml`` / ``classes.txt`` and
``model.safetensors`` (so ``eval``, ``predict`` and :func:`avformer.load` keep reading the folder eagerly):

- ``torchscript``: ``model.torchscript.pt``, the model's inference forward traced with :func:`torch.jit.trace` on
  inputs of the run's shapes (batch 2) and saved with :func:`torch.jit.save`. Tracing, not scripting: the encoders
  use Python constructs TorchScript's compiler rejects, and every branch in their forward depends on shapes, not
  values, so the trace is exact for any batch size and any presence masks. ``torch.export`` works too but takes
  ~10x longer for the same graph and needs ``torch.export.load`` of the same torch version.
- ``onnx``: ``model.onnx``, :func:`torch.onnx.export` with the TorchScript-based exporter (``dynamo=False``,
  opset 17, the batch axis dynamic); the dynamo exporter gives the same graph, with the same numbers, in ~60 s
  instead of ~5 s for ``mmt_tiny``. Transposes written with a negative axis (``movedim(-1, 1)``) are rewritten to
  positive ones, which ONNX Runtime's shape inference requires.

Both take the inputs positionally and return the logits ``(B, K)`` (fp32): an audio-visual model
``(audio, video, has_audio, has_video)`` with ``(B,)`` bool presence masks, a single encoder its one input
(``audio`` (B, 1, F, T) log-mel or (B, 1, S) waveform, or ``video`` (B, 3, T, H, W)). Supported: every registered
classifier whose forward is made of shape-static tensor code, i.e. the audio-visual models (``mmt_*``,
``av_late_*`` and the other fusions), AST, MAT / MViTv2, VideoViT and ``vatt_classifier``; not a run without
classes (self-supervised pretraining: VATT, MAE-style runs), whose outputs are not logits.

Backends (``avformer predict --backend``, ``avformer bench predict``) have one call signature, the exported
graph's: ``backend(*inputs) -> logits``. ``eager`` runs the PyTorch model (fp32, or bf16 under autocast),
``torchscript`` the traced module (fp32 or bf16 autocast), ``onnxruntime`` the ONNX graph on ONNX Runtime's CPU
provider (fp32 only). :func:`stand_in` makes a backend look like the model to the code that calls it
(:func:`avformer.tasks.inference.predict_batch`), so decoding, transforms and pooling stay the model's own.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from avformer.models.av_model import AVModel, input_modality
from avformer.utils.errors import UsageError

__all__ = [
    "BACKENDS",
    "BACKEND_FORMAT",
    "CHECK_ATOL",
    "FORMAT_FILES",
    "PRECISIONS",
    "Backend",
    "EagerBackend",
    "OnnxRuntimeBackend",
    "TorchScriptBackend",
    "check_tolerance",
    "example_inputs",
    "input_names",
    "load_backend",
    "stand_in",
    "write_onnx",
    "write_torchscript",
]

TORCHSCRIPT_FILE = "model.torchscript.pt"
ONNX_FILE = "model.onnx"
FORMAT_FILES: dict[str, str] = {"torchscript": TORCHSCRIPT_FILE, "onnx": ONNX_FILE}
BACKENDS = ("eager", "torchscript", "onnxruntime")
BACKEND_FORMAT: dict[str, str] = {"torchscript": "torchscript", "onnxruntime": "onnx"}  # backend -> export format
PRECISIONS: dict[str, tuple[str, ...]] = {"eager": ("fp32", "bf16"), "torchscript": ("fp32", "bf16"),
                                          "onnxruntime": ("fp32",)}  # fmt: skip
# the export check's limit on max |exported - eager| logit, relative to the logits' scale: check_tolerance().
# fp32 graphs differ by op order and fusion only: measured ~1e-6 for mmt_tiny / mat_tiny with logits of a few
# units, 1e-1 for logits of ~260 (a model whose weights were all shifted by +1: float32 rounding at that scale)
CHECK_ATOL = 1e-3
_ONNX_OPSET = 17
_AV_INPUTS = ("audio", "video", "has_audio", "has_video")


def check_tolerance(eager_logits: Tensor) -> float:
    """The largest max |exported - eager| logit difference the export check accepts: ``CHECK_ATOL`` times the
    larger of 1 and the largest |logit| (absolute 1e-3 for logits of a few units, relative 1e-3 beyond)."""
    return CHECK_ATOL * max(1.0, float(eager_logits.abs().max()))


class Backend(Protocol):
    """Runs a classifier: ``backend(*inputs) -> (B, K) logits`` (inputs as in :func:`input_names`)."""

    name: str
    precision: str

    def __call__(self, *inputs: Tensor) -> Tensor: ...


# ---- what is exported ------------------------------------------------------------------------------------------
def _kind(model: nn.Module) -> str:
    """``av``, ``audio`` or ``video`` (:func:`~avformer.models.av_model.input_modality`); UsageError for a model
    without a classifier's call signature."""
    try:
        return input_modality(model)
    except TypeError:
        raise UsageError(
            f"{type(model).__name__} is not a classifier of audio and/or video; export it as safetensors"
        ) from None


def input_names(model: nn.Module) -> tuple[str, ...]:
    """The exported graph's inputs, in order: ``audio, video, has_audio, has_video`` or the one modality."""
    kind = _kind(model)
    return _AV_INPUTS if kind == "av" else (kind,)


def _default_input(module: nn.Module) -> tuple[int, ...]:
    shape = getattr(module, "default_input", None)
    if shape is None:
        shape = getattr(getattr(module, "cfg", None), "default_input", None)
    if shape is None:
        raise UsageError(f"{type(module).__name__} has no default input size to export with")
    return tuple(int(s) for s in shape)


def example_inputs(model: nn.Module, batch: int = 2, seed: int = 0) -> tuple[Tensor, ...]:
    """Random inputs of the model's input size (the run's: its overrides set it), masks all True."""
    g = torch.Generator().manual_seed(seed)
    if _kind(model) != "av":
        return (torch.randn(batch, *_default_input(model), generator=g),)
    assert isinstance(model, AVModel)
    audio = torch.randn(batch, *_default_input(model.audio_encoder), generator=g)
    video = torch.randn(batch, *_default_input(model.video_encoder), generator=g)
    ones = torch.ones(batch, dtype=torch.bool)
    return audio, video, ones, ones.clone()


class _Logits(nn.Module):
    """The inference forward: positional inputs -> logits (no embeddings, no output dataclass)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.av = isinstance(model, AVModel)

    def forward(self, *inputs: Tensor) -> Tensor:
        if self.av:
            return self.model(*inputs, embed=False).logits
        return self.model(*inputs)


@contextlib.contextmanager
def _atomic(target: Path) -> Iterator[Path]:
    """A temporary file beside ``target``, renamed onto it when the block succeeds (removed when it fails)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Tracing warns about every shape check (``if x.shape[1] != C``) and about its own deprecation: not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def write_torchscript(model: nn.Module, folder: Path) -> Path:
    """Trace ``model``'s inference forward on CPU and save ``folder/model.torchscript.pt``."""
    wrapped = _Logits(copy.deepcopy(model).cpu().float().eval())
    inputs = example_inputs(model)
    with torch.no_grad(), _quiet():
        traced = torch.jit.trace(wrapped, inputs, check_trace=False)
    target = folder / TORCHSCRIPT_FILE
    with _atomic(target) as tmp, _quiet():
        torch.jit.save(traced, str(tmp))
    return target


def write_onnx(model: nn.Module, folder: Path) -> Path:
    """Export ``model``'s inference forward to ``folder/model.onnx`` (batch axis dynamic, opset 17)."""
    try:
        import onnx
    except ImportError as e:
        raise UsageError("--format onnx needs the onnx package: pip install 'avformer[onnx]'") from e
    wrapped = _Logits(copy.deepcopy(model).cpu().float().eval())
    names = list(input_names(model))
    target = folder / ONNX_FILE
    with _atomic(target) as tmp, torch.no_grad(), _quiet():
        torch.onnx.export(
            wrapped,
            example_inputs(model),
            str(tmp),
            dynamo=False,
            opset_version=_ONNX_OPSET,
            input_names=names,
            output_names=["logits"],
            dynamic_axes={n: {0: "batch"} for n in [*names, "logits"]},
        )
        graph = onnx.load(str(tmp))
        _positive_transposes(graph.graph)
        onnx.save(graph, str(tmp))
    return target


def _positive_transposes(graph: Any) -> None:
    """``Transpose(perm=[0, -1, 1, 2])`` -> ``[0, 3, 1, 2]``: the exporter copies negative axes of ``movedim``;
    ONNX Runtime's type inference refuses them."""
    import onnx

    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Transpose" and attr.name == "perm" and any(p < 0 for p in attr.ints):
                perm = [p % len(attr.ints) for p in attr.ints]
                del attr.ints[:]
                attr.ints.extend(perm)
            elif attr.type == onnx.AttributeProto.GRAPH:
                _positive_transposes(attr.g)


# ---- backends ----------------------------------------------------------------------------------------------------
def _autocast(precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class EagerBackend:
    """The PyTorch model itself (fp32, or bf16 under CPU/CUDA autocast)."""

    name = "eager"

    def __init__(self, model: nn.Module, precision: str = "fp32") -> None:
        _check_precision(self.name, precision)
        self.model, self.precision = _Logits(model).eval(), precision
        self.device = next(model.parameters()).device

    def __call__(self, *inputs: Tensor) -> Tensor:
        ctx = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.precision == "bf16" else None
        with torch.no_grad(), ctx or contextlib.nullcontext():
            return self.model(*inputs).float()


class TorchScriptBackend:
    """A traced ``model.torchscript.pt`` on the CPU (fp32, or bf16 under autocast: the trace is fp32 aten ops)."""

    name = "torchscript"

    def __init__(self, path: str | Path, precision: str = "fp32") -> None:
        _check_precision(self.name, precision)
        self.precision = precision
        with _quiet():
            self.module = torch.jit.load(str(path), map_location="cpu").eval()

    def __call__(self, *inputs: Tensor) -> Tensor:
        with torch.no_grad(), _autocast(self.precision):
            return self.module(*(x.cpu() for x in inputs)).float()


class OnnxRuntimeBackend:
    """``model.onnx`` on ONNX Runtime's CPU provider, with torch's intra-op thread count (fp32)."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, precision: str = "fp32", threads: int | None = None) -> None:
        _check_precision(self.name, precision)
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise UsageError("--backend onnxruntime needs onnxruntime: pip install 'avformer[onnx]'") from e
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        self.precision = precision
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *inputs: Tensor) -> Tensor:
        feed = {n: x.detach().cpu().numpy() for n, x in zip(self.names, inputs, strict=True)}
        return torch.from_numpy(self.session.run(None, feed)[0])


def _check_precision(backend: str, precision: str) -> None:
    if precision not in PRECISIONS[backend]:
        raise UsageError(f"backend {backend} runs {' / '.join(PRECISIONS[backend])} only, not {precision}")


def load_backend(name: str, model: nn.Module, folder: str | Path, precision: str = "fp32") -> Backend:
    """The backend ``name`` for the run whose eager ``model`` is given; an exported one reads its file from
    ``folder`` (an export folder, or a file in it).

    Raises:
        UsageError: an unknown backend, a precision it does not run, or no exported file of its format there.
    """
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    if name == "eager":
        return EagerBackend(model, precision)
    folder = Path(folder)
    folder = folder.parent if folder.is_file() else folder
    fmt = BACKEND_FORMAT[name]
    path = folder / FORMAT_FILES[fmt]
    if not path.is_file():
        raise UsageError(f"{folder}: no {path.name} for --backend {name}; write it with avformer export --format {fmt}")
    _check_precision(name, precision)
    return TorchScriptBackend(path, precision) if name == "torchscript" else OnnxRuntimeBackend(path, precision)


def stand_in(model: nn.Module, backend: Callable[..., Tensor]) -> nn.Module:
    """A shallow copy of ``model`` whose forward calls ``backend`` (same weights, attributes and submodules, so
    code that inspects the model, such as :func:`avformer.tasks.inference.predict_batch`, sees the same model).
    An audio-visual model's forward returns an object with ``logits`` only."""
    proxy = copy.copy(model)
    av = isinstance(model, AVModel)

    def forward(*inputs: Tensor, **_: Any) -> Any:
        logits = backend(*inputs)
        return SimpleNamespace(logits=logits) if av else logits

    object.__setattr__(proxy, "forward", forward)
    return proxy
