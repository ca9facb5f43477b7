"""XDC task: which clusters train which head, the clustering schedule, head resets, resume, and no labels."""

from __future__ import annotations

import types
from typing import Any

import pytest
import torch

from avformer.data.config import DataConfig
from avformer.data.dataset import AVDataset
from avformer.data.manifest import Manifest, ManifestRow
from avformer.metrics.clustering import normalized_mutual_info
from avformer.models.registry import create_model
from avformer.models.task_heads import TASK_HEADS
from avformer.tasks import xdc
from avformer.tasks.base import EpochContext
from avformer.tasks.xdc import XDCOptions, XDCTask

TINY = {"embed_dim": 32, "depth": 1, "num_heads": 2, "num_frames": 4, "img_size": 32, "tubelet_size": (2, 16, 16),
        "num_samples": 1024, "vocab_size": 97, "text_word_dim": 8, "va_dim": 16, "vt_dim": 8}  # fmt: skip
N = 40  # rows of the fake training set
K = 4


def _task(**options: Any) -> XDCTask:
    torch.manual_seed(0)
    return XDCTask(create_model("vatt_tiny", **TINY), XDCOptions(num_clusters=K, **options))  # type: ignore[arg-type]


def _batch(index: list[int]) -> dict[str, Any]:
    b = len(index)
    return {"video": torch.randn(b, 3, 4, 32, 32), "audio": torch.randn(b, 1, 1024), "index": torch.tensor(index)}


def _grads(task: XDCTask, batch: dict[str, Any]) -> dict[str, float]:
    """Gradient norm per part of the model after one training step."""
    task.model.zero_grad()
    loss, _ = task.training_step(batch)
    loss.backward()
    parts: dict[str, float] = {}
    for name, p in task.model.named_parameters():
        key = ".".join(name.split(".")[:2])  # encoders.video, task_heads.video_from_audio, ...
        g = 0.0 if p.grad is None else float(p.grad.norm())
        parts[key] = parts.get(key, 0.0) + g
    return parts


@pytest.mark.parametrize(("variant", "trained"), [("xdc", "video"), ("sdc", "audio")])
def test_audio_clusters_train_the_video_head_in_xdc_and_the_audio_head_in_sdc(variant: str, trained: str) -> None:
    task = _task(variant=variant)
    task.model.train()
    task.labels = {"audio": torch.arange(N) % K, "video": torch.full((N,), -1)}  # only audio clusters known
    task.weights = {m: torch.ones(K) for m in ("audio", "video")}
    g = _grads(task, _batch([0, 1, 2, 3, 5, 8]))
    other = "audio" if trained == "video" else "video"
    head = "video_from_audio" if variant == "xdc" else "audio_from_audio"
    assert g[f"{TASK_HEADS}.{head}"] > 0 and g[f"encoders.{trained}"] > 0
    assert g[f"encoders.{other}"] == 0.0  # the audio clusters never reach the other tower
    assert sum(v for k, v in g.items() if k.startswith(TASK_HEADS) and k != f"{TASK_HEADS}.{head}") == 0.0


def test_pseudo_labels_are_looked_up_by_dataset_row() -> None:
    task = _task()
    task.model.eval()
    task.weights = {m: torch.ones(K) for m in ("audio", "video")}
    batch = _batch([7, 3])
    task.labels = {"audio": torch.zeros(N, dtype=torch.long), "video": torch.zeros(N, dtype=torch.long)}
    base, _ = task.training_step(batch)
    task.labels["audio"][11] = 2  # a row not in the batch: nothing changes
    assert torch.equal(task.training_step(batch)[0], base)
    task.labels["audio"][3] = 2  # a row in the batch: the video head's target changes
    loss, logs = task.training_step(batch)
    assert not torch.equal(loss, base) and "ce_video_from_audio" in logs


class _FakeEmbedding:
    """Stands in for embed_training_set: two blobs per modality, rows in a shuffled order, and a call count."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.blob = {"video": torch.arange(N) % K, "audio": (torch.arange(N) // 10) % K}
        centres = torch.randn(K, 32, generator=g) * 5
        self.feats = {m: centres[b] + 0.1 * torch.randn(N, 32, generator=g) for m, b in self.blob.items()}
        self.order = torch.randperm(N, generator=g)
        self.calls = 0

    def __call__(self, model: Any, dataset: Any, **_: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        self.calls += 1
        return {m: f[self.order] for m, f in self.feats.items()}, self.order


def _ctx(epoch: int, optimizer: Any = None) -> EpochContext:
    rows = [ManifestRow(path=f"missing{i}.mp4", id=str(i)) for i in range(N)]
    ds = AVDataset(Manifest(rows), DataConfig())
    loader = types.SimpleNamespace(dataset=ds, num_workers=0)
    return EpochContext(epoch, 10, torch.device("cpu"), "fp32", loader, 0, optimizer)


def test_clusters_follow_the_rows_reclustering_runs_on_schedule_and_heads_reset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _FakeEmbedding()
    monkeypatch.setattr(xdc, "embed_training_set", fake)
    task = _task(cluster_every=2)
    opt = torch.optim.AdamW(task.model.parameters())
    task.model.train()
    task.on_epoch_start(_ctx(0, opt))
    for m in ("audio", "video"):  # labels are per dataset row, whatever order the rows were embedded in
        assert normalized_mutual_info(task.labels[m], fake.blob[m]) == pytest.approx(1.0)
    loss, _ = task.training_step(_batch(list(range(8))))
    loss.backward()
    opt.step()
    head = task.heads["video_from_audio"]
    trained_weight = head.weight.detach().clone()
    assert head.weight in opt.state and task.model.encoders["video"].cls_token in opt.state
    for epoch in range(1, 5):
        task.on_epoch_start(_ctx(epoch, opt))
    assert fake.calls == 3 and task.round == 2  # epochs 0, 2 and 4
    assert not torch.equal(head.weight, trained_weight)  # re-initialised
    assert head.weight not in opt.state  # ... with fresh optimizer state
    assert task.model.encoders["video"].cls_token in opt.state  # the encoders keep theirs


def test_state_round_trip_resumes_without_reclustering(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeEmbedding()
    monkeypatch.setattr(xdc, "embed_training_set", fake)
    task = _task(cluster_every=2)
    task.on_epoch_start(_ctx(0))
    state = task.state_dict()
    resumed = _task(cluster_every=2)
    resumed.load_state_dict(state)
    resumed.on_epoch_start(_ctx(1))  # not a clustering epoch: the restored labels are used
    assert fake.calls == 1 and resumed.round == 0
    assert all(torch.equal(resumed.labels[m], task.labels[m]) for m in task.labels)
    batch = _batch([1, 2, 3])
    task.model.eval()
    resumed.model.load_state_dict(task.model.state_dict())
    resumed.model.eval()
    assert torch.equal(task.training_step(batch)[0], resumed.training_step(batch)[0])


def test_validation_reports_nmi_and_retrieval_only_where_heads_share_clusters() -> None:
    g = torch.Generator().manual_seed(0)
    label = torch.arange(60) % 3
    outputs = {
        "video_pooled": torch.randn(3, 32, generator=g)[label] * 4 + torch.randn(60, 32, generator=g),
        "audio_pooled": torch.randn(60, 32, generator=g),  # no class structure
        "has_video": torch.ones(60, dtype=torch.bool),
        "has_audio": torch.ones(60, dtype=torch.bool),
        "label": label,
    }
    task = _task(variant="mdc")
    heads = {n: torch.randn(60, K, generator=g) for n in ("video_from_video", "video_from_audio", "audio_from_audio")}
    heads["audio_from_video"] = heads["video_from_video"] + 0.01 * torch.randn(60, K, generator=g)
    out = task.validation_end(outputs | {f"logits_{n}": v for n, v in heads.items()})
    assert out["nmi_video"] > 0.9 > 0.3 > out["nmi_audio"]
    assert out["a2v_R@1"] > 0.5  # the two heads on video clusters agree clip by clip
    plain = _task(variant="xdc").validation_end(outputs | {"logits_video_from_audio": heads["video_from_audio"]})
    assert "a2v_mAP" not in plain and "nmi_video" in plain


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="variant must be one of"):
        XDCOptions(variant="dc")
    with pytest.raises(ValueError, match="num_clusters"):
        XDCOptions(num_clusters=1)
    with pytest.raises(TypeError, match="one trunk per modality"):
        xdc.build_xdc(create_model("vatt_ma_tiny", **TINY), XDCOptions(), xdc.TaskData())
