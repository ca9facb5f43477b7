"""Measure a model: FLOPs, peak training memory, throughput. Used by ``avformer profile`` and docs/numbers.

FLOPs
    ``torch.utils.flop_counter.FlopCounterMode`` over one forward and its backward, attention switched to the
    eager path (``fused=False`` on every submodule that has a ``fused`` attribute): on CPU the counter sees a fused
    SDPA kernel as 0 FLOPs. The counter counts matmul / bmm / conv (and SDPA kernels it knows) at 2 FLOPs per
    multiply-add; softmax, norms, activations and adds are not counted. Papers in the MViT line (and fvcore) quote
    multiply-adds as "FLOPs": ``FlopCount.macs`` is that number. Counting is shape-only, so it runs on the ``meta``
    device (``count_flops`` accepts a meta model and a meta input) and costs milliseconds for any model size.

Peak training memory of one step (forward, backward, AdamW step)
    * CUDA: measured, ``torch.cuda.max_memory_allocated`` over a second training step (the first one allocates the
      optimizer state), so it includes parameters, gradients, AdamW state, activations and transient buffers.
    * CPU: an *estimate*, the sum of
      parameters + gradients (one per trainable parameter) + AdamW state (2 × trainable parameters)
      + activations saved for backward, captured with ``torch.autograd.graph.saved_tensors_hooks`` during one
      training-mode forward and deduplicated by storage (views of one buffer count once; parameters' own storages
      are excluded, autocast copies of weights are included).
      It leaves out allocator caching/fragmentation, the framework's own memory and the temporary buffers of
      backward (activation gradients), and it counts gradients as resident together with all activations (a
      ``zero_grad(set_to_none=True)`` loop frees them before the forward). Read it as the steady-state footprint
      of the tensors a step keeps, not an RSS reading: for ast_base at 1x128x1024 it says 1.96 GiB, while a
      process running forward+backward *without* the 0.64 GiB of AdamW state peaked at 2.2 GiB RSS.

Throughput
    Median seconds per step over ``steps`` timed steps after ``warmup`` untimed ones, on the model's own (fused)
    attention path: forward in ``eval`` under ``torch.inference_mode``, forward+backward in ``train`` (no optimizer
    step). bfloat16 means ``torch.autocast`` with float32 parameters, as training runs.

Matmul rate and MFU
    :func:`matmul_rate` measures what the device sustains on one large square matmul (2048×2048 on a CPU, 8192×8192
    on a GPU) in a given dtype: a few untimed calls, then as many as fit in about ``seconds``. It is the yardstick
    of :func:`mfu` where no data-sheet peak exists (every CPU): model FLOPs utilisation = model FLOPs per training
    step / step time / matmul rate of the precision the step ran in. It is a measured rate, below the data-sheet
    peak (on a GPU a large matmul reaches 70-90 % of it), so MFU against it reads higher than against a peak.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import torch
from rich.console import Console
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from avformer.utils.device import synchronize
from avformer.utils.progress import track

__all__ = [
    "FlopCount",
    "MemoryEstimate",
    "ProfileResult",
    "Throughput",
    "attention_path",
    "count_flops",
    "count_parameters",
    "forward_flops",
    "matmul_rate",
    "mfu",
    "profile_model",
    "throughput",
    "training_peak_memory",
]


class FlopCount(NamedTuple):
    """FLOPs of one step (2 per multiply-add), for the whole batch."""

    forward: int
    forward_backward: int

    @property
    def macs(self) -> int:
        """Forward multiply-adds (what fvcore and the MViT/MAT papers call FLOPs)."""
        return self.forward // 2


@dataclass
class MemoryEstimate:
    """Peak memory of one training step, in bytes."""

    peak_bytes: int
    measured: bool  # True: read from the CUDA allocator; False: CPU estimate (sum of the parts below)
    method: str
    parts: dict[str, int] = field(default_factory=dict)


@dataclass
class Throughput:
    median_step_s: float
    clips_per_s: float
    steps: int


@dataclass
class ProfileResult:
    """Everything ``avformer profile`` prints for one model."""

    input_shape: tuple[int, ...]  # including batch
    device: str
    dtype: str
    threads: int
    params: int
    trainable_params: int
    flops: FlopCount
    flops_path: str
    memory: MemoryEstimate
    forward: Throughput | None
    forward_backward: Throughput | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["flops"] = {"forward": self.flops.forward, "forward_backward": self.flops.forward_backward}
        d["flops"]["forward_macs"] = self.flops.macs
        return d


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(all, trainable)`` parameter counts (shared parameters once)."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


@contextlib.contextmanager
def attention_path(model: nn.Module, fused: bool) -> Iterator[int]:
    """Temporarily set ``fused`` on every submodule with a boolean ``fused`` instance attribute; yields how many.

    The encoders' attention modules keep ``fused`` as a plain attribute (SDPA when True, eager math when False).
    Read-only ``fused`` properties (a model-level summary) are not instance attributes and are left alone.
    """
    saved = [(m, m.fused) for m in model.modules() if isinstance(vars(m).get("fused"), bool)]
    for m, _ in saved:
        m.fused = fused
    try:
        yield len(saved)
    finally:
        for m, old in saved:
            m.fused = old


def _autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager[Any]:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _loss(out: Any) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"model(x) should return a tensor, got {type(out).__name__}")
    return out.float().sum()


@contextlib.contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[None]:
    was = model.training
    model.train(training)
    try:
        yield
    finally:
        model.train(was)


def forward_flops(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """FLOPs of one forward ``model(*inputs)`` (for the whole batch), eager attention, eval mode; works on ``meta``.
    Unlike :func:`count_flops` the model may take several inputs and return anything."""
    with attention_path(model, fused=False), _mode(model, training=False), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return int(counter.get_total_flops())


def count_flops(model: nn.Module, x: torch.Tensor, *, eager_attention: bool = True) -> FlopCount:
    """FLOPs of ``model(x)`` and of forward + backward (gradients of the parameters, not of ``x``).

    Counted in eval mode (no stochastic depth, no activation-checkpoint recompute). Works on the meta device.

    Args:
        model: a module returning a tensor.
        x: the batch (its batch size is included in the count).
        eager_attention: switch attention to the eager path while counting (see the module docstring).
    """
    path = attention_path(model, fused=False) if eager_attention else contextlib.nullcontext()
    with path, _mode(model, training=False), FlopCounterMode(display=False) as counter:
        out = model(x)
        fwd = counter.get_total_flops()
        _loss(out).backward()
        total = counter.get_total_flops()
    model.zero_grad(set_to_none=True)
    return FlopCount(forward=int(fwd), forward_backward=int(total))


def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    # (address, size) of the buffer behind t: views of one buffer share it. Saved tensors stay alive until the
    # graph is dropped, so two live buffers never share an address.
    s = t.untyped_storage()
    return (s.data_ptr(), s.nbytes())


def _saved_activation_bytes(model: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> int:
    """Bytes held for backward after one training-mode forward, each storage once, parameters excluded."""
    param_keys = {_storage_key(p)[0] for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key, nbytes = _storage_key(t)
        if key not in param_keys:
            seen[key] = nbytes
        return t

    with _mode(model, training=True), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with _autocast(x.device, dtype):
            out = model(x)
        del out  # drops the graph; nothing is run backward
    return sum(seen.values())


def training_peak_memory(model: nn.Module, x: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> MemoryEstimate:
    """Peak memory of one training step with AdamW: measured on CUDA, estimated on CPU (see module docstring)."""
    if x.device.type == "cuda":
        return _cuda_peak_memory(model, x, dtype)
    params = list(model.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    train_bytes = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    act = _saved_activation_bytes(model, x, dtype)
    parts = {
        "parameters": param_bytes,
        "gradients": train_bytes,
        "adamw_state": 2 * train_bytes,
        "saved_activations": act,
    }
    return MemoryEstimate(
        peak_bytes=sum(parts.values()),
        measured=False,
        method="estimate: params + grads + AdamW state (2x) + tensors saved for backward (deduplicated by storage)",
        parts=parts,
    )


def _cuda_peak_memory(model: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> MemoryEstimate:
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=0.0)  # lr 0: the step allocates and touches state, weights stay put

    def step() -> None:
        with _autocast(x.device, dtype):
            out = model(x)
        _loss(out).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    with _mode(model, training=True):
        step()  # allocates the AdamW state
        torch.cuda.synchronize(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        step()
        torch.cuda.synchronize(x.device)
    peak = torch.cuda.max_memory_allocated(x.device)
    return MemoryEstimate(
        peak_bytes=int(peak),
        measured=True,
        method="measured: torch.cuda.max_memory_allocated over the second training step (AdamW)",
    )


def throughput(
    model: nn.Module,
    x: torch.Tensor,
    *,
    train: bool = False,
    steps: int = 10,
    warmup: int = 2,
    dtype: torch.dtype = torch.float32,
    console: Console | None = None,
) -> Throughput:
    """Clips per second of forward (``train=False``) or forward + backward (``train=True``).

    Args:
        model: on the same device as ``x``; its own attention path is used (normally fused SDPA).
        x: the batch; clips/s = batch size / median step time.
        steps: timed steps (>= 1); warmup: untimed steps before them.
        console: where to show the steps done (:class:`~avformer.utils.progress.Progress`); None: silent.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got {steps}, {warmup}")

    def fwd() -> None:
        with torch.inference_mode(), _autocast(x.device, dtype):
            model(x)

    def fwd_bwd() -> None:
        with _autocast(x.device, dtype):
            out = model(x)
        _loss(out).backward()
        model.zero_grad(set_to_none=True)

    run: Callable[[], None] = fwd_bwd if train else fwd
    times: list[float] = []
    what = "throughput f+b" if train else "throughput fwd"
    with _mode(model, training=train):
        for i in track(range(warmup + steps), what, unit="steps", console=console, enabled=console is not None):
            synchronize(x.device)
            t0 = time.perf_counter()
            run()
            synchronize(x.device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return Throughput(median_step_s=med, clips_per_s=x.shape[0] / med, steps=steps)


def profile_model(
    model: nn.Module,
    x: torch.Tensor,
    *,
    flops_model: nn.Module | None = None,
    dtype: torch.dtype = torch.float32,
    steps: int = 10,
    warmup: int = 2,
    console: Console | None = None,
) -> ProfileResult:
    """Parameters, FLOPs, peak training memory and (``steps > 0``) throughput of ``model`` on batch ``x``.

    Args:
        model: the model on the measurement device.
        x: input batch on that device.
        flops_model: an identical model to count FLOPs on, typically built on the meta device (fast; the counter
            only needs shapes). Defaults to ``model``.
        dtype: float32, or bfloat16/float16 for autocast.
        steps: timed throughput steps; 0 skips throughput.
        warmup: untimed steps before them.
        console: where to say which part runs, before it runs, and show the throughput steps done; None: silent.
    """

    def say(msg: str) -> None:
        if console is not None:
            console.print(msg, markup=False, highlight=False, soft_wrap=True)

    n_all, n_train = count_parameters(model)
    say("  counting FLOPs (forward + backward, shapes only)")
    fm = model if flops_model is None else flops_model
    fx = x if flops_model is None else torch.empty(x.shape, device=next(fm.parameters()).device)
    with attention_path(fm, fused=False) as n_switched:
        flops = count_flops(fm, fx, eager_attention=False)
    flops_path = (
        f"eager attention (fused=False on {n_switched} modules)"
        if n_switched
        else "model's own attention path (no `fused` switch found: fused SDPA on CPU may count as 0)"
    )
    say(f"  peak training memory ({'two training steps' if x.device.type == 'cuda' else 'one training forward'})")
    memory = training_peak_memory(model, x, dtype=dtype)
    fwd = fwd_bwd = None
    if steps > 0:
        say(f"  throughput: {warmup} warm-up + {steps} timed steps of forward, then of forward+backward")
        fwd = throughput(model, x, train=False, steps=steps, warmup=warmup, dtype=dtype, console=console)
        fwd_bwd = throughput(model, x, train=True, steps=steps, warmup=warmup, dtype=dtype, console=console)
    return ProfileResult(
        input_shape=tuple(x.shape),
        device=str(x.device),
        dtype=str(dtype).removeprefix("torch."),
        threads=torch.get_num_threads(),
        params=n_all,
        trainable_params=n_train,
        flops=flops,
        flops_path=flops_path,
        memory=memory,
        forward=fwd,
        forward_backward=fwd_bwd,
    )


def matmul_rate(
    device: torch.device | str,
    dtype: torch.dtype,
    *,
    size: int | None = None,
    seconds: float = 1.0,
    warmup: int = 3,
    timer: Callable[[], float] = time.perf_counter,
) -> float:
    """FLOP/s of ``size``×``size`` matmuls in ``dtype`` on ``device`` (2 FLOPs per multiply-add).

    Args:
        size: the square side; default 2048 on a CPU, 8192 on a GPU (a 2048 matmul is too short to fill one).
        seconds: timed for at least this long, >= 1 call (on a GPU in doubling batches of calls, so that it
            syncs rarely).
        warmup: untimed calls first (oneDNN / cuBLAS pick and cache their kernels).
        timer: the clock (tests replace it).
    """
    device = torch.device(device)
    n = size or (8192 if device.type == "cuda" else 2048)
    if n < 1 or seconds < 0 or warmup < 0:
        raise ValueError(f"need size >= 1, seconds >= 0 and warmup >= 0, got {n}, {seconds}, {warmup}")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    for _ in range(warmup):
        torch.mm(a, b, out=out)
    synchronize(device)
    calls, batch = 0, 1
    t0 = timer()
    while True:
        for _ in range(batch):
            torch.mm(a, b, out=out)
        synchronize(device)
        calls += batch
        elapsed = timer() - t0
        if elapsed >= seconds:
            break
        if device.type != "cpu":  # a GPU call is asynchronous: sync after ever longer batches of calls
            batch *= 2
    return 2.0 * n**3 * calls / max(elapsed, 1e-12)


def mfu(flops_per_step: float, step_s: float, flops_per_s: float) -> float:
    """Model FLOPs utilisation: ``flops_per_step`` done in ``step_s`` seconds, as a fraction of ``flops_per_s``."""
    if step_s <= 0 or flops_per_s <= 0:
        raise ValueError(f"need step_s > 0 and flops_per_s > 0, got {step_s}, {flops_per_s}")
    return flops_per_step / step_s / flops_per_s
