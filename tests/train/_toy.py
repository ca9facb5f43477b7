"""A toy Task for the trainer tests: a tiny MLP on separable Gaussian blobs, batched by the real ``collate``.

Run as a module it trains in a child process (``python -m tests.train._toy OUT_DIR ...``), so tests can SIGKILL or
SIGTERM a real run. Training draws from the global RNG in the data path (noise augmentation) and in the model
(dropout), so an exact resume needs the RNG states restored at the right points.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from avformer.config import ExperimentConfig, ModelSpec, OptimConfig, TrainConfig
from avformer.data.dataset import collate, make_loader
from avformer.train.trainer import fit

SKIP_KEY = "__skipped__"  # the marker AVDataset returns for a row it cannot load (see avformer.data.dataset)


class Blobs(Dataset[dict[str, Any]]):
    """``n`` points of ``num_classes`` Gaussian blobs in ``dim`` dimensions; rows in ``bad`` fail to load."""

    def __init__(
        self,
        n: int = 96,
        dim: int = 8,
        num_classes: int = 3,
        *,
        noise: float = 0.1,
        bad: tuple[int, ...] = (),
        per_sample_rng: bool = False,
    ) -> None:
        g = torch.Generator().manual_seed(1234)
        centers = torch.randn(num_classes, dim, generator=g) * 2.0
        self.label = torch.arange(n) % num_classes
        self.x = centers[self.label] + torch.randn(n, dim, generator=g)
        self.noise = noise
        self.bad = set(bad)
        self.per_sample_rng = per_sample_rng  # noise from (epoch, index) like AVDataset, else the global RNG
        self.epoch = torch.zeros((), dtype=torch.int64).share_memory_()  # seen by persistent workers too

    def set_epoch(self, epoch: int) -> None:
        self.epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i in self.bad:
            return {SKIP_KEY: True, "id": f"row{i}", "index": i, "reason": "MediaError: synthetic bad row"}
        g = torch.Generator().manual_seed(int(self.epoch) * 100_003 + i) if self.per_sample_rng else None
        x = self.x[i] + self.noise * torch.randn(self.x.shape[1], generator=g)  # global RNG unless per_sample_rng
        return {"x": x, "label": self.label[i], "id": f"row{i}", "index": i}


class ToyTask:
    """Linear -> LayerNorm -> GELU -> Dropout -> Linear, cross-entropy; metrics top1 and loss."""

    def __init__(
        self, dim: int = 8, num_classes: int = 3, hidden: int = 16, dropout: float = 0.1, slow: float = 0.0
    ) -> None:
        self.model = nn.Sequential(
            nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
        )
        self.slow = slow
        self.calls = 0

    def training_step(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        self.calls += 1
        if self.slow:
            time.sleep(self.slow)
        logits = self.model(batch["x"])
        loss = F.cross_entropy(logits.float(), batch["label"])
        return loss, {"acc": float((logits.argmax(-1) == batch["label"]).float().mean())}

    def validation_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        return {"logits": self.model(batch["x"]), "label": batch["label"]}

    def validation_end(self, outputs: dict[str, Tensor]) -> dict[str, float]:
        logits, label = outputs["logits"], outputs["label"]
        return {
            "top1": float((logits.argmax(-1) == label).float().mean()),
            "loss": float(F.cross_entropy(logits, label)),
        }


def make_cfg(out_dir: Path | str, **train: Any) -> ExperimentConfig:
    """Toy experiment: 4 epochs of 12 batches; ``train`` overrides TrainConfig fields, ``optim_*`` OptimConfig's."""
    optim = {k.removeprefix("optim_"): train.pop(k) for k in list(train) if k.startswith("optim_")}
    tcfg: dict[str, Any] = {"epochs": 4, "batch_size": 8, "log_every": 2, "tensorboard": False, "out_dir": str(out_dir)}
    tcfg |= train
    ocfg: dict[str, Any] = {"lr": 0.02, "weight_decay": 0.01, "warmup_steps": 3, "min_lr": 1e-4} | optim
    return ExperimentConfig(
        name="toy", model=ModelSpec("toy_mlp"), optim=OptimConfig(**ocfg), train=TrainConfig(**tcfg)
    )


def train_loader(kind: str, batch_size: int, seed: int, dataset: Blobs | None = None, shuffle: bool = True) -> Any:
    """The loaders a user may hand the trainer.

    ``make_loader``: avformer's (DistributedSampler, order from (seed, epoch)); ``plain``: a shuffling DataLoader
    that draws its order from the global RNG; ``generator``: a DataLoader with its own generator; ``workers``:
    make_loader with one worker process over a dataset whose randomness comes from (epoch, index).
    """
    if kind == "make_loader":
        return make_loader(dataset or Blobs(), batch_size=batch_size, shuffle=shuffle, seed=seed)  # type: ignore[arg-type]
    if kind == "workers":
        ds = dataset or Blobs(per_sample_rng=True)
        return make_loader(ds, batch_size=batch_size, shuffle=shuffle, seed=seed, num_workers=1)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(seed) if kind == "generator" else None
    return DataLoader(dataset or Blobs(), batch_size=batch_size, shuffle=shuffle, collate_fn=collate, generator=gen)


def run(
    cfg: ExperimentConfig,
    *,
    dataset: Blobs | None = None,
    task: ToyTask | None = None,
    shuffle: bool = True,
    loader: str = "make_loader",
    on_epoch_end: Any = None,
    console: Console | None = None,
) -> tuple[ToyTask, dict[str, Any]]:
    """Build the toy task and loaders the same way every time, and fit."""
    torch.manual_seed(0)  # model init
    task = task or ToyTask()
    train = train_loader(loader, cfg.train.batch_size, cfg.train.seed, dataset, shuffle)
    val = make_loader(Blobs(48, noise=0.0), batch_size=16, shuffle=False)  # type: ignore[arg-type]
    console = console or Console(file=io.StringIO(), width=200)
    return task, fit(task, train, val, cfg, on_epoch_end=on_epoch_end, console=console)


def weights(task: ToyTask) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in task.model.state_dict().items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out_dir")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument("--slow", type=float, default=0.0, help="seconds of sleep per training step")
    p.add_argument("--marker-epoch", type=int, default=1, help="write OUT_DIR/epoch<k>.done after epoch k")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out_dir)
    cfg = make_cfg(out, epochs=args.epochs, checkpoint_every=args.checkpoint_every)

    def marker(row: dict[str, Any]) -> None:
        if row["epoch"] == args.marker_epoch:
            (out / f"epoch{args.marker_epoch}.done").write_text("")

    torch.manual_seed(0)
    _, summary = run(cfg, task=ToyTask(slow=args.slow), on_epoch_end=marker, console=Console(width=200))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
