"""Collective helpers and the distributed (gather) path of the contrastive losses.

What is verified, for every contrastive loss with ``gather=True`` on W ranks holding B samples each:

* values: ``mean over ranks of the local losses == single-process loss on the concatenated W*B batch``;
* gradients: the gradient rank ``r`` gets for its own inputs, divided by W, equals rows ``[r*B, (r+1)*B)`` of the
  single-process input gradient. (Each rank's loss is ``W ×`` its share of the global mean, and the gather's backward
  sums over ranks, so rank ``r`` holds ``W × dL/dx_r``; DDP then *averages* parameter gradients over ranks, which
  gives exactly the single-process parameter gradient.)

Both run twice: on a fake in-process world (threads standing in for ranks, ``torch.distributed`` replaced by an
object whose ``all_gather``/``all_reduce`` meet at a barrier: "mocked collectives"), and on a real 2-process gloo
group over loopback TCP. The real run also shows that ``sync_grads=False`` (gather without a backward collective)
gets the values right but the candidates' gradients wrong, i.e. that the gradient check can fail.
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import avformer.losses.contrastive as contrastive
from avformer.losses import AVCLoss, IMCLoss, info_nce, mil_nce, supcon_cross, supcon_within
from avformer.utils import distributed

W, BL, D, P = 2, 6, 5, 3  # world size, local batch, embed dim, text segments per clip
GRAD_KEYS = ("audio", "video", "text")


def _global_inputs() -> dict[str, torch.Tensor]:
    """The concatenated batch of all ranks (rank r holds rows r*BL:(r+1)*BL)."""
    g = torch.Generator().manual_seed(0)
    n = W * BL
    text_mask = torch.rand(n, P, generator=g) < 0.7
    text_mask[4] = False
    return {
        "audio": torch.randn(n, D, generator=g, dtype=torch.float64),
        "video": torch.randn(n, D, generator=g, dtype=torch.float64),
        "text": torch.randn(n, P, D, generator=g, dtype=torch.float64),
        # classes repeat across ranks; class 4 occurs once
        "labels": torch.tensor([0, 1, 2, 0, 3, 1, 2, 0, 1, 4, 3, 0]),
        # rank 1 misses more audio than rank 0: the global (not local) anchor count must normalise
        "audio_mask": torch.tensor([1, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 0], dtype=torch.bool),
        "video_mask": torch.tensor([1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1], dtype=torch.bool),
        "text_mask": text_mask,
    }


Case = Callable[[dict[str, torch.Tensor], bool], torch.Tensor]
CASES: dict[str, Case] = {
    "supcon_cross": lambda x, g: supcon_cross(
        x["audio"], x["video"], x["labels"], 0.1, anchor_mask=x["audio_mask"], other_mask=x["video_mask"], gather=g
    ),
    "supcon_within": lambda x, g: supcon_within(x["audio"], x["labels"], 0.1, mask=x["audio_mask"], gather=g),
    "avc": lambda x, g: AVCLoss(0.1, gather=g)(
        x["audio"], x["video"], x["labels"], audio_mask=x["audio_mask"], video_mask=x["video_mask"]
    ),
    "imc": lambda x, g: IMCLoss(0.1, gather=g)(
        x["audio"], x["video"], x["labels"], audio_mask=x["audio_mask"], video_mask=x["video_mask"]
    ),
    "info_nce": lambda x, g: info_nce(x["video"], x["audio"], 0.1, b_mask=x["audio_mask"], gather=g),
    "mil_nce": lambda x, g: mil_nce(
        x["video"], x["text"], 0.1, text_mask=x["text_mask"], video_mask=x["video_mask"], gather=g
    ),
    "mil_nce_sym": lambda x, g: mil_nce(
        x["video"], x["text"], 0.1, text_mask=x["text_mask"], video_mask=x["video_mask"], symmetric=True, gather=g
    ),
}


def _run_cases(
    rank: int, world: int, gather: bool, names: list[str] | None = None, sizes: list[int] | None = None
) -> dict[str, dict[str, Any]]:
    """Loss and input gradients of each case on this rank's slice (the full batch when world == 1); ``sizes``:
    rows per rank (default ``BL`` each)."""
    full = _global_inputs()
    sizes = sizes or [BL] * world
    start = sum(sizes[:rank])
    rows = slice(start, start + sizes[rank]) if world > 1 else slice(None)
    out: dict[str, dict[str, Any]] = {}
    for name in names or list(CASES):
        x = {k: v[rows].clone() for k, v in full.items()}
        for k in GRAD_KEYS:
            x[k].requires_grad_()
        loss = CASES[name](x, gather)
        loss.backward()
        grads = {k: x[k].grad if x[k].grad is not None else torch.zeros_like(x[k]) for k in GRAD_KEYS}
        out[name] = {"loss": loss.detach(), **grads}
    return out


def _assert_matches_single_process(per_rank: list[dict[str, dict[str, Any]]]) -> None:
    ref = _run_cases(0, 1, gather=False)
    for name in per_rank[0]:
        mean = torch.stack([r[name]["loss"] for r in per_rank]).mean()
        torch.testing.assert_close(mean, ref[name]["loss"], rtol=0, atol=1e-10, msg=f"{name}: loss")
        for k in GRAD_KEYS:
            got = torch.cat([r[name][k] for r in per_rank]) / len(per_rank)
            torch.testing.assert_close(got, ref[name][k], rtol=0, atol=1e-10, msg=f"{name}: grad {k}")


# ---- single process (no process group) ----------------------------------------------------------------------------


def test_helpers_without_process_group() -> None:
    assert not torch.distributed.is_initialized()
    assert distributed.world_size() == 1
    assert distributed.rank() == 0
    assert distributed.is_main()
    assert not distributed.is_dist()
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.gather_with_grad(x) is x
    got = distributed.gather_no_grad(x)
    assert not got.requires_grad and torch.equal(got, x)


def test_gather_flag_is_a_no_op_in_one_process() -> None:
    x = _global_inputs()
    for name, case in CASES.items():
        torch.testing.assert_close(case(x, True), case(x, False), rtol=0, atol=0, msg=name)


# ---- mocked collectives: ranks as threads -------------------------------------------------------------------------


class _FakeDist:
    """Stands in for ``torch.distributed``: W threads are the ranks; collectives meet at a barrier."""

    class ReduceOp:
        SUM = "sum"

    def __init__(self, world: int) -> None:
        self.world = world
        self.calls: list[str] = []
        self._barrier = threading.Barrier(world, timeout=30)
        self._slots: list[torch.Tensor | None] = [None] * world
        self._local = threading.local()

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return True

    def get_world_size(self) -> int:
        return self.world

    def get_rank(self) -> int:
        return self._local.rank

    def _exchange(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._slots[self.get_rank()] = x.clone()
        self._barrier.wait()
        got = [s for s in self._slots if s is not None]
        self._barrier.wait()  # nobody overwrites a slot before everyone has read
        return got

    def all_gather(self, out: list[torch.Tensor], x: torch.Tensor) -> None:
        if self.get_rank() == 0:
            self.calls.append(f"all_gather{tuple(x.shape)}")
        for o, s in zip(out, self._exchange(x), strict=True):
            o.copy_(s)

    def all_reduce(self, x: torch.Tensor, op: str = ReduceOp.SUM) -> None:
        assert op == self.ReduceOp.SUM
        if self.get_rank() == 0:
            self.calls.append(f"all_reduce{tuple(x.shape)}")
        x.copy_(torch.stack(self._exchange(x)).sum(dim=0))

    def run(self, fn: Callable[[int], Any]) -> list[Any]:
        results: list[Any] = [None] * self.world
        errors: list[BaseException] = []

        def target(r: int) -> None:
            self._local.rank = r
            try:
                results[r] = fn(r)
            except BaseException as e:  # surface the failure of any rank
                errors.append(e)
                self._barrier.abort()

        threads = [threading.Thread(target=target, args=(r,)) for r in range(self.world)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results


@pytest.fixture
def fake_world(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], _FakeDist]:
    def make(world: int) -> _FakeDist:
        fake = _FakeDist(world)
        monkeypatch.setattr(distributed, "dist", fake)
        return fake

    return make


@pytest.mark.parametrize("sync_grads", [True, False])
def test_gather_with_grad_mocked(fake_world: Callable[[int], _FakeDist], sync_grads: bool) -> None:
    world, b = 3, 2
    fake = fake_world(world)
    weights = [torch.arange(world * b * 2, dtype=torch.float64).reshape(world * b, 2) * (s + 1) for s in range(world)]

    def step(r: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = torch.full((b, 2), float(r), dtype=torch.float64, requires_grad=True)
        gathered = distributed.gather_with_grad(x, sync_grads=sync_grads)
        (gathered * weights[r]).sum().backward()
        mask = distributed.gather_no_grad(torch.tensor([r % 2 == 0] * b))
        return gathered.detach(), x.grad, mask

    results = fake.run(step)
    expected_rows = torch.arange(world, dtype=torch.float64).repeat_interleave(b)[:, None].expand(-1, 2)
    for r, (gathered, grad, mask) in enumerate(results):
        assert torch.equal(gathered, expected_rows)  # rank order along dim 0
        assert mask.dtype == torch.bool and mask.tolist() == [s % 2 == 0 for s in range(world) for _ in range(b)]
        rows = slice(r * b, (r + 1) * b)
        expected = sum(w[rows] for w in weights) if sync_grads else weights[r][rows]
        torch.testing.assert_close(grad, expected)
    assert ("all_reduce(6, 2)" in fake.calls) == sync_grads


def test_losses_gather_mocked_world_matches_single_process(fake_world: Callable[[int], _FakeDist]) -> None:
    fake = fake_world(W)
    per_rank = fake.run(lambda r: _run_cases(r, W, gather=True))
    _assert_matches_single_process(per_rank)
    assert any(c.startswith("all_reduce") for c in fake.calls)  # the backward collective did run


def test_losses_gather_unequal_rank_batches_match_single_process(fake_world: Callable[[int], _FakeDist]) -> None:
    """Ranks may hold different numbers of clips (a file that failed to load, the last shard batch): the gathers
    pad and trim, self/pair indices use the real offsets, and the result is still the single-process loss."""
    fake = fake_world(W)
    sizes = [BL - 2, BL + 2]
    per_rank = fake.run(lambda r: _run_cases(r, W, gather=True, sizes=sizes))
    _assert_matches_single_process(per_rank)
    offsets = fake.run(lambda r: distributed.rank_offset(sizes[r]))
    assert offsets == [0, sizes[0]]


def test_losses_without_gather_do_not_communicate(fake_world: Callable[[int], _FakeDist]) -> None:
    fake = fake_world(W)
    fake.run(lambda r: _run_cases(r, W, gather=False))
    assert fake.calls == []


# ---- real processes: gloo over loopback ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gloo_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        result = {"rank": distributed.rank(), "world": distributed.world_size(), "main": distributed.is_main()}
        result["sync"] = _run_cases(rank, world, gather=True)
        # the open_clip-style gather without a backward collective, for contrast
        contrastive.gather_with_grad = functools.partial(distributed.gather_with_grad, sync_grads=False)
        result["local_grad"] = _run_cases(rank, world, gather=True, names=["supcon_cross"])
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_losses_gather_two_gloo_processes_match_single_process(tmp_path: Path) -> None:
    if not torch.distributed.is_gloo_available():
        pytest.skip("gloo backend not available")
    torch.multiprocessing.spawn(_gloo_worker, args=(W, _free_port(), str(tmp_path)), nprocs=W, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(W)]
    assert [(r["rank"], r["world"], r["main"]) for r in results] == [(0, 2, True), (1, 2, False)]
    _assert_matches_single_process([r["sync"] for r in results])

    # without the backward all-reduce: same values, same anchor gradients (audio is not gathered in audio→video),
    # but the video (candidate) gradients miss the terms from the other rank's anchors
    ref = _run_cases(0, 1, gather=False, names=["supcon_cross"])["supcon_cross"]
    local = [r["local_grad"]["supcon_cross"] for r in results]
    torch.testing.assert_close(torch.stack([r["loss"] for r in local]).mean(), ref["loss"], rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.cat([r["audio"] for r in local]) / W, ref["audio"], rtol=0, atol=1e-10)
    video_error = (torch.cat([r["video"] for r in local]) / W - ref["video"]).abs().max().item()
    assert video_error > 1e-3
