"""AdamW with decoupled weight decay on the right parameters, and a warmup + cosine learning-rate schedule.

Weight decay is not applied to (the timm / MAE convention):

- parameters with ``ndim <= 1``: norm weights and biases, biases of linear/conv layers, scalar temperatures
  such as ``logit_scale``;
- names ending in ``.bias``;
- names returned by any submodule's ``no_weight_decay()`` (position embeddings, class and bottleneck tokens),
  prefixed with that submodule's path, so a composite model need not re-export its encoders' names.

The schedule is a function of the optimizer step: linear warmup from ``lr / warmup_steps`` to ``lr`` over
``warmup_steps`` steps, then a half cosine from ``lr`` down to ``min_lr`` at ``total_steps``. Layer-wise lr decay
is not implemented.

The AdamW kernel (``optim.implementation``): ``auto`` takes torch's fused kernel when every parameter is on a CPU
or CUDA device and the model is not FSDP-sharded (there it takes ``foreach``). On the 2-core dev machine
(``tools/bench_adamw.py --threads 1``, fp32, medians of 3, machine shared) an AdamW step over ``mat_base``'s 51 M
parameters took 66 ms fused, 206 ms ``for_loop`` and 231 ms ``foreach`` (3.1x); over ``ast_base``'s 86 M, 104 ms
against 369 and 485 ms (3.5x). The kernels differ only in rounding; a checkpoint keeps the kernel it was
trained with (its param groups carry the flag), so a resumed run stays exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from avformer.config import OptimConfig

__all__ = ["WarmupCosine", "adamw_kernel", "build_optimizer", "lr_at", "no_weight_decay_names", "param_groups"]


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Full parameter names listed by ``no_weight_decay()`` of ``model`` and of every submodule."""
    names: set[str] = set()
    for prefix, module in model.named_modules():
        fn = getattr(module, "no_weight_decay", None)
        if callable(fn):
            names |= {f"{prefix}.{n}" if prefix else n for n in fn()}
    return names


def param_groups(model: nn.Module, weight_decay: float, skip: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Two AdamW groups: ``decay`` and ``no_decay`` (see the module docstring). Frozen parameters are left out.

    Args:
        model: the model (a DDP/FSDP wrapper works too: names then carry its prefix, handled below).
        weight_decay: decay of the ``decay`` group.
        skip: extra full parameter names without decay.
    """
    skip_names = no_weight_decay_names(model) | set(skip)
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    decay_names: list[str] = []
    no_decay_names: list[str] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        bare = name.removeprefix("module.")  # DDP wrapper
        if p.ndim <= 1 or name.endswith(".bias") or name in skip_names or bare in skip_names:
            no_decay.append(p)
            no_decay_names.append(name)
        else:
            decay.append(p)
            decay_names.append(name)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "names": decay_names},
        {"params": no_decay, "weight_decay": 0.0, "names": no_decay_names},
    ]
    return [g for g in groups if g["params"]]


_FUSED_DEVICES = ("cpu", "cuda")


def adamw_kernel(params: Iterable[torch.Tensor], implementation: str = "auto", *, sharded: bool = False) -> str:
    """The AdamW kernel that ``implementation`` (``optim.implementation``) resolves to for ``params``: ``fused``,
    ``foreach`` or ``for_loop``. ``auto`` is ``fused`` unless ``sharded`` (FSDP) or a parameter lives elsewhere
    than on a CPU or CUDA device."""
    if implementation != "auto":
        return implementation
    if sharded or any(p.device.type not in _FUSED_DEVICES for p in params):
        return "foreach"
    return "fused"


def build_optimizer(model: nn.Module, cfg: OptimConfig, *, sharded: bool = False) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` with ``cfg``'s lr, betas, eps, weight decay and kernel (:func:`adamw_kernel`;
    ``sharded``: the model is FSDP-sharded)."""
    groups = param_groups(model, cfg.weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    kernel = adamw_kernel((p for g in groups for p in g["params"]), cfg.implementation, sharded=sharded)
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for_loop": {"foreach": False}}[kernel]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, **flags)


def lr_at(step: int, *, base_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate for optimizer step ``step`` (0 = the first update).

    ``step < warmup_steps``: ``base_lr * (step + 1) / warmup_steps``. Afterwards a half cosine from ``base_lr``
    at ``warmup_steps`` to ``min_lr`` at ``total_steps`` (and ``min_lr`` beyond).
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Sets each param group's lr from :func:`lr_at`; call :meth:`step` after every optimizer step.

    Groups keep their ratio to ``base_lr`` (a group created with half the lr stays at half).
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, base_lr: float, min_lr: float, warmup_steps: int, total_steps: int
    ) -> None:
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.min_lr = min_lr
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.last_step = 0
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self._apply()

    def lr(self, step: int | None = None) -> float:
        """The schedule's base lr at ``step`` (default: the next update)."""
        s = self.last_step if step is None else step
        return lr_at(
            s, base_lr=self.base_lr, min_lr=self.min_lr, warmup_steps=self.warmup_steps, total_steps=self.total_steps
        )

    def _apply(self) -> None:
        scale = self.lr() / self.base_lr
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * scale

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the step; warmup/total come from the current config (so a run may be extended)."""
        self.last_step = int(state["last_step"])
        self._apply()
