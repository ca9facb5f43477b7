"""A transformer over word ids: VATT's text encoder, on the same trunk as the ViT encoders of ``avformer.models.vit``.

Paper: Akbari et al., "VATT", NeurIPS 2021, https://arxiv.org/abs/2104.11178 (text: word2vec embeddings of up to 16
words, a linear projection, learned positions, an [AGG] token and a transformer). Differences: the word embeddings
are learned from scratch (VATT: frozen word2vec); id 0 is padding, masked out of attention (keys only: a padding
token still gets an output, which pooling over the [AGG] token never reads). Ids come from
:mod:`avformer.data.tokenize`.

``forward_features``: ``(B, L)`` int ids -> tokens ``(B, L, D)``, pooled ``(B, D)``, grid ``(L,)``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from avformer.models.vit import ViTEncoder
from avformer.models.vit_config import TextTransformerConfig

__all__ = ["TextTransformer", "TextTransformerConfig", "WordEmbed"]


class WordEmbed(nn.Module):
    """Word ids ``(B, L)`` -> tokens ``(B, L, D)``: a ``word_dim`` embedding (row 0 = padding, kept at zero) and a
    linear projection to ``D``; the tokenizer slot of :class:`TextTransformer`."""

    def __init__(self, vocab_size: int, word_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.word_embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.proj = nn.Linear(word_dim, embed_dim)

    def grid_size(self, size: tuple[int, ...]) -> tuple[int, ...]:
        return (size[0],)

    def init_weights(self) -> None:
        """Zero the padding row (after the encoder's trunc-normal init of every embedding)."""
        with torch.no_grad():
            self.word_embed.weight[0].zero_()

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        return self.proj(self.word_embed(ids)), (ids.shape[1],)


class TextTransformer(ViTEncoder):
    """Word embeddings + learned positions + [AGG] + the ViT trunk, padding masked in attention.

    Constructor args as :class:`~avformer.models.vit.AudioSpectrogramTransformer` (``trunk_from`` shares another
    encoder's blocks: VATT's modality-agnostic variant). Texts longer than ``max_tokens`` raise ValueError.
    """

    config_class = TextTransformerConfig
    input_kind: ClassVar[str] = "text"
    _no_wd_names = ("pos_embed", "cls_token")

    def _build_embedding(self, cfg: TextTransformerConfig) -> None:
        self.patch_embed = WordEmbed(cfg.vocab_size, cfg.word_dim, cfg.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim)) if cfg.class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.max_tokens, cfg.embed_dim))

    def _patch_pos(self, grid: tuple[int, ...]) -> torch.Tensor:
        (L,), max_tokens = grid, self.pos_embed.shape[1]
        if max_tokens < L:
            raise ValueError(f"text has {L} tokens, more than max_tokens={max_tokens}")
        return self.pos_embed[:, :L]

    def attn_bias(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 1, P + L): the smallest float on padding keys (id 0), zero on the prefix and the words."""
        pad = torch.cat([torch.zeros_like(x[:, : self.num_prefix_tokens], dtype=torch.bool), x == 0], dim=1)
        dtype = self.pos_embed.dtype  # the weights' dtype; autocast casts it with q and k
        bias = torch.zeros(pad.shape, dtype=dtype, device=x.device).masked_fill(pad, torch.finfo(dtype).min)
        return bias[:, None, None, :]
