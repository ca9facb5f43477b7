"""Decomposed relative position embeddings (MViTv2), generalised to token grids with any number of axes.

MViTv2 (Li et al. 2022, https://arxiv.org/abs/2112.01526, Sec. 3.1) adds to the attention logit between a query at
grid position ``i`` and a key at ``j`` the term ``q_i · R_{p(i), p(j)}`` and decomposes ``R`` per axis:

    R_{p(i), p(j)} = R^1[i_1 - j_1] + R^2[i_2 - j_2] + ...      (one learnable table per grid axis)

so the cost is one ``(Nq, k_a)`` product per axis instead of an ``(Nq, Nk)`` table lookup. The bias is returned as
an additive tensor ``(B, h, Nq, Nk)``, so it can be passed to SDPA as ``attn_mask`` (fused path) or added to the
logits (eager path) — the two give the same result.

When query and key grids differ along an axis (key/value pooling), the coordinates of the smaller grid are
stretched to the larger one, as in the reference implementation (SlowFast, torchvision ``_add_rel_pos``): with
``r_q = max(k/q, 1)`` and ``r_k = max(q/k, 1)`` the table index is ``floor(i r_q - j r_k + (k - 1) r_k)``.

A table is sized for the grids of the configured input (``2 max(q, k) - 1`` rows). For a grid of another size the
table is resampled by linear interpolation to the needed length (``resize_rel_pos_table``), as torchvision and
SlowFast do for resolution changes: relative offsets are expressed as a fraction of the grid extent, so a model
trained on 10 s of audio reads a 1 s clip as a "zoomed-in" 10 s clip. This keeps one set of weights usable at any
input size; accuracy at a very different size is an empirical question, like any resolution change.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["decomposed_rel_pos_bias", "rel_pos_index", "rel_pos_table_len", "resize_rel_pos_table"]

_AXES = "ijklm"  # einsum letters for up to 5 grid axes


def rel_pos_table_len(q_size: int, k_size: int) -> int:
    """Rows a table needs for query/key grids of ``q_size`` and ``k_size`` along one axis."""
    return 2 * max(q_size, k_size) - 1


def resize_rel_pos_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """Linearly resample a ``(L, d)`` table to ``(length, d)`` (identity when ``L == length``)."""
    if table.shape[0] == length:
        return table
    resized = F.interpolate(table.t().unsqueeze(0), size=length, mode="linear")  # (1, d, length)
    return resized.squeeze(0).t()


def rel_pos_index(q_size: int, k_size: int, device: torch.device | None = None) -> torch.Tensor:
    """Table row for every (query, key) pair along one axis: ``(q_size, k_size)`` int64 in ``[0, 2 max - 1)``."""
    q_ratio = max(k_size / q_size, 1.0)
    k_ratio = max(q_size / k_size, 1.0)
    q_pos = torch.arange(q_size, device=device)[:, None] * q_ratio
    k_pos = torch.arange(k_size, device=device)[None, :] * k_ratio
    return (q_pos - k_pos + (k_size - 1) * k_ratio).long()


def decomposed_rel_pos_bias(
    q: torch.Tensor,
    q_grid: Sequence[int],
    k_grid: Sequence[int],
    tables: Sequence[torch.Tensor],
) -> torch.Tensor:
    """Additive attention bias from per-axis relative position tables.

    Args:
        q: (B, h, Nq, d) queries of the grid tokens only (no class token), *before* the 1/sqrt(d) scaling.
        q_grid: query grid per axis, ``prod(q_grid) == Nq``.
        k_grid: key grid per axis (same number of axes).
        tables: one ``(L_a, d)`` table per axis; resampled when ``L_a != 2 max(q_a, k_a) - 1``.

    Returns:
        (B, h, Nq, Nk) bias with ``Nk = prod(k_grid)``, to add to the scaled logits ``q k^T / sqrt(d)``.
    """
    n = len(q_grid)
    if not (len(k_grid) == len(tables) == n) or n > len(_AXES):
        raise ValueError(f"need one table per axis: q_grid={q_grid}, k_grid={k_grid}, {len(tables)} tables")
    B, h, Nq, d = q.shape
    q_nd = q.reshape(B, h, *q_grid, d)  # (B, h, *q_grid, d)
    axes = _AXES[:n]
    bias: torch.Tensor | None = None
    for a, (qa, ka, table) in enumerate(zip(q_grid, k_grid, tables, strict=True)):
        table = resize_rel_pos_table(table, rel_pos_table_len(qa, ka))
        r = table[rel_pos_index(qa, ka, device=q.device)]  # (qa, ka, d)
        rel = torch.einsum(f"bh{axes}c,{axes[a]}zc->bh{axes}z", q_nd, r)  # (B, h, *q_grid, ka)
        # place ka at key axis a, broadcast over the other key axes: (B, h, *q_grid, 1.., ka, ..1)
        shape = [B, h, *q_grid] + [ka if b == a else 1 for b in range(n)]
        rel = rel.reshape(shape)
        bias = rel if bias is None else bias + rel
    assert bias is not None
    bias = bias.expand(B, h, *q_grid, *k_grid)
    return bias.reshape(B, h, Nq, -1)  # (B, h, Nq, Nk)
