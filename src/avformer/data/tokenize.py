"""Text of a clip into token ids: segments (MIL-NCE positives), hashed words, and BERT's WordPiece.

* :func:`split_segments`: a clip's text (a ``text`` manifest column, an ``.srt``, a ``.txt``, a subtitle stream; see
  :mod:`avformer.data.text`) into segments, one per line or ``" | "``-separated part.
* :class:`SegmentTokenizer`: B clips' texts into padded ``(B, P, L)`` ids and a ``(B, P)`` segment mask; its
  subclasses say how one segment becomes ids: :class:`HashedWordTokenizer` (lower-cased words hashed into a fixed
  vocabulary: stateless, no vocabulary file; VATT's default text path here) and :class:`MiniLMTokenizer` (the
  ``[CLS] pieces [SEP]`` WordPiece ids of all-MiniLM-L6-v2's uncased vocabulary, computed by a
  :class:`WordPieceEncoder` such as :class:`avformer.models.minilm.WordPieceIds`, Hugging Face ``tokenizers``).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import Protocol

import torch

__all__ = ["HashedWordTokenizer", "MiniLMTokenizer", "SegmentTokenizer", "WordPieceEncoder", "split_segments"]

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SEGMENT_SPLIT = re.compile(r"\s*(?:\n|\s\|\s)\s*")


# ---- segments ---------------------------------------------------------------------------------------------------
def split_segments(text: str | None) -> list[str]:
    """Text segments of one clip: lines (or ``" | "``-separated parts) that hold at least one word.

    A ``text`` manifest column with several captions, an ``.srt`` with several cues or a ``.txt`` with several lines
    gives several segments, each a MIL-NCE positive of its clip.
    """
    if not text:
        return []
    return [s for s in _SEGMENT_SPLIT.split(text.strip()) if _WORD.search(s.lower())]


class SegmentTokenizer:
    """Text of B clips -> padded ``(B, P, L)`` ids of their segments; subclasses give :meth:`encode` (0 = padding)."""

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def __call__(
        self, texts: Sequence[str | None], *, max_segments: int | None = None, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenize one text (or None) per clip, split into segments (:func:`split_segments`).

        Args:
            texts: B clips' texts; None or empty for a clip without text.
            max_segments: keep at most this many segments per clip (None: all).
            device: where the tensors go.

        Returns:
            ``ids`` (B, P, L) int64 with 0 as padding and ``segment_mask`` (B, P) bool (False: padding segment).
            ``P`` and ``L`` are the batch maxima (at least 1), so a batch without any text gives (B, 1, 1) zeros.
        """
        segs = [split_segments(t)[:max_segments] for t in texts]
        enc = [[self.encode(s) for s in clip] for clip in segs]
        P = max([len(c) for c in enc] + [1])
        L = max([len(s) for c in enc for s in c] + [1])
        ids = torch.zeros(len(texts), P, L, dtype=torch.long)
        mask = torch.zeros(len(texts), P, dtype=torch.bool)
        for b, clip in enumerate(enc):
            for p, seg in enumerate(clip):
                ids[b, p, : len(seg)] = torch.tensor(seg, dtype=torch.long)
                mask[b, p] = len(seg) > 0
        return ids.to(device), mask.to(device)


class HashedWordTokenizer(SegmentTokenizer):
    """Lower-cased words to hashed ids (see the module docstring); stateless, so nothing to save with a checkpoint.

    Args:
        vocab_size: number of ids including padding (0).
        max_tokens: words kept per segment (the rest are cut).
    """

    def __init__(self, vocab_size: int, max_tokens: int) -> None:
        if vocab_size < 2 or max_tokens < 1:
            raise ValueError(f"need vocab_size >= 2 and max_tokens >= 1, got {vocab_size}, {max_tokens}")
        self.vocab_size = vocab_size
        self.max_tokens = max_tokens

    def word_id(self, word: str) -> int:
        return 1 + zlib.crc32(word.encode("utf-8")) % (self.vocab_size - 1)

    def encode(self, text: str) -> list[int]:
        """Ids of the first ``max_tokens`` words of ``text``."""
        return [self.word_id(w) for w in _WORD.findall(text.lower())[: self.max_tokens]]


class WordPieceEncoder(Protocol):
    """What :class:`MiniLMTokenizer` needs of a WordPiece tokenizer (the models layer provides one)."""

    def encode(self, text: str, max_tokens: int) -> list[int]:
        """``[CLS] pieces [SEP]`` ids, at most ``max_tokens`` in all."""
        ...


class MiniLMTokenizer(SegmentTokenizer):
    """MiniLM's WordPiece ids per segment: ``[CLS] pieces [SEP]``, at most ``max_tokens`` (>= 3) in all."""

    def __init__(self, wordpiece: WordPieceEncoder, max_tokens: int) -> None:
        if max_tokens < 3:
            raise ValueError(f"MiniLM segments need max_tokens >= 3 ([CLS], a piece, [SEP]), got {max_tokens}")
        self.wordpiece = wordpiece
        self.max_tokens = max_tokens

    def encode(self, text: str) -> list[int]:
        return self.wordpiece.encode(text, self.max_tokens)
