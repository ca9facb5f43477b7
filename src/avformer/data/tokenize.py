"""Text of a clip into token ids: segments (MIL-NCE positives), hashed words, and BERT's WordPiece.

* :func:`split_segments`: a clip's text (a ``text`` manifest column, an ``.srt``, a ``.txt``, a subtitle stream; see
  :mod:`avformer.data.text`) into segments, one per line or ``" | "``-separated part.
* :class:`SegmentTokenizer`: B clips' texts into padded ``(B, P, L)`` ids and a ``(B, P)`` segment mask; its
  subclasses say how one segment becomes ids: :class:`HashedWordTokenizer` (lower-cased words hashed into a fixed
  vocabulary: stateless, no vocabulary file; VATT's default text path here) and :class:`MiniLMTokenizer` (the
  ``[CLS] pieces [SEP]`` WordPiece ids of all-MiniLM-L6-v2's uncased vocabulary, :class:`WordPieceTokenizer`).
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["HashedWordTokenizer", "MiniLMTokenizer", "SegmentTokenizer", "WordPieceTokenizer", "split_segments"]

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


class MiniLMTokenizer(SegmentTokenizer):
    """MiniLM's WordPiece ids per segment: ``[CLS] pieces [SEP]``, at most ``max_tokens`` (>= 3) in all."""

    def __init__(self, wordpiece: WordPieceTokenizer, max_tokens: int) -> None:
        if max_tokens < 3:
            raise ValueError(f"MiniLM segments need max_tokens >= 3 ([CLS], a piece, [SEP]), got {max_tokens}")
        self.wordpiece = wordpiece
        self.max_tokens = max_tokens

    def encode(self, text: str) -> list[int]:
        return self.wordpiece.encode(text, self.max_tokens)


# ---- tokenizer ----------------------------------------------------------------------------------------------------
def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:  # all non-alphanumeric ASCII symbols
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    ranges = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
              (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))  # fmt: skip
    return any(lo <= cp <= hi for lo, hi in ranges)


class WordPieceTokenizer:
    """BERT's uncased tokenizer: clean, lower-case, strip accents, split on whitespace and punctuation (CJK characters
    stand alone), then greedy longest-match-first WordPiece with ``##`` continuations.

    Args:
        vocab: the tokens, one per id (``vocab.txt`` order).
        max_word_chars: longer words become ``[UNK]`` (BERT: 100).
    """

    def __init__(self, vocab: list[str], max_word_chars: int = 100) -> None:
        self.vocab = {tok: i for i, tok in enumerate(vocab)}
        for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
            if special not in self.vocab:
                raise ValueError(f"vocabulary has no {special} token")
        self.pad_id, self.unk_id = self.vocab["[PAD]"], self.vocab["[UNK]"]
        self.cls_id, self.sep_id = self.vocab["[CLS]"], self.vocab["[SEP]"]
        self.max_word_chars = max_word_chars

    @classmethod
    def from_file(cls, path: str | Path) -> WordPieceTokenizer:
        return cls(Path(path).read_text(encoding="utf-8").splitlines())

    def words(self, text: str) -> list[str]:
        """The basic tokenizer's output: lower-cased, accent-free words and single punctuation marks."""
        chars = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
                continue
            if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
                chars.append(" ")
            elif _is_cjk(cp):
                chars.append(f" {ch} ")
            else:
                chars.append(ch)
        out: list[str] = []
        for word in "".join(chars).split():
            word = "".join(c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn")
            piece = ""
            for ch in word:
                if _is_punctuation(ch):
                    if piece:
                        out.append(piece)
                    out.append(ch)
                    piece = ""
                else:
                    piece += ch
            if piece:
                out.append(piece)
        return out

    def wordpiece(self, word: str) -> list[int]:
        if len(word) > self.max_word_chars:
            return [self.unk_id]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                if sub in self.vocab:
                    ids.append(self.vocab[sub])
                    break
                end -= 1
            if end == start:  # no piece matches: the whole word is unknown
                return [self.unk_id]
            start = end
        return ids

    def encode(self, text: str, max_tokens: int) -> list[int]:
        """``[CLS] pieces [SEP]`` ids, at most ``max_tokens`` (>= 3) in all (pieces cut from the end)."""
        if max_tokens < 3:
            raise ValueError(f"max_tokens must be >= 3 ([CLS], one piece, [SEP]), got {max_tokens}")
        pieces = [i for w in self.words(text) for i in self.wordpiece(w)][: max_tokens - 2]
        return [self.cls_id, *pieces, self.sep_id]
