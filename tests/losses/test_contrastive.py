"""Contrastive losses against naive float64 double-loop references, masks, edge cases and gradcheck."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avformer.losses import AVCLoss, IMCLoss, info_nce, mil_nce, supcon_cross, supcon_within

# ---- naive references (plain Python loops over float64 numpy) -------------------------------------------------------


def _unit(x: torch.Tensor) -> np.ndarray:
    x = x.detach().double().numpy()
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _lse(values: list[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def _ref_supcon(za, zc, ya, yc, t, anchor_ok, cand_ok) -> float:
    """SupCon L_out: cand_ok(i, j) says whether candidate j is in A(i)."""
    terms = []
    for i in range(len(za)):
        if not anchor_ok[i]:
            continue
        cands = [j for j in range(len(zc)) if cand_ok(i, j)]
        pos = [j for j in cands if yc[j] == ya[i]]
        if not pos:
            continue
        log_den = _lse([float(za[i] @ zc[j]) / t for j in cands])
        terms.append(-sum(float(za[i] @ zc[p]) / t - log_den for p in pos) / len(pos))
    return sum(terms) / len(terms) if terms else 0.0


def ref_supcon_cross(a, o, y, t, am=None, om=None) -> float:
    b = len(y)
    am = [True] * b if am is None else am.tolist()
    om = [True] * b if om is None else om.tolist()
    y = y.tolist()
    return _ref_supcon(_unit(a), _unit(o), y, y, t, am, lambda i, j: om[j])


def ref_supcon_within(e, y, t, m=None) -> float:
    b = len(y)
    m = [True] * b if m is None else m.tolist()
    y = y.tolist()
    return _ref_supcon(_unit(e), _unit(e), y, y, t, m, lambda i, j: m[j] and j != i)


def ref_info_nce(a, b, t, am=None, bm=None) -> float:
    ids = torch.arange(len(a))
    return 0.5 * (ref_supcon_cross(a, b, ids, t, am, bm) + ref_supcon_cross(b, a, ids, t, bm, am))


def ref_mil_nce(v, txt, t, tm=None, vm=None, symmetric=False) -> float:
    b, p = txt.shape[:2]
    tm = np.ones((b, p), bool) if tm is None else tm.numpy()
    vm = np.ones(b, bool) if vm is None else vm.numpy()
    zv, zt = _unit(v), _unit(txt)
    terms = []
    for i in range(b):
        if not vm[i] or not tm[i].any():
            continue
        num = _lse([float(zv[i] @ zt[i, k]) / t for k in range(p) if tm[i, k]])
        den = [float(zv[i] @ zt[c, k]) / t for c in range(b) for k in range(p) if tm[c, k]]
        if symmetric:
            den += [float(zv[c] @ zt[i, k]) / t for c in range(b) for k in range(p) if vm[c] and tm[i, k]]
        terms.append(_lse(den) - num)
    return sum(terms) / len(terms) if terms else 0.0


# ---- data ---------------------------------------------------------------------------------------------------------

# class 4 appears once (no positive across-set for... itself only; none within-set), class 0 three times
LABELS = torch.tensor([0, 1, 0, 2, 1, 3, 2, 0, 4, 3, 1, 2])
B, D = len(LABELS), 6


def _emb(seed: int, *shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _mask(seed: int, n: int, p_keep: float = 0.75) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, generator=g) < p_keep


# ---- references ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.07, 0.5])
@pytest.mark.parametrize("masked", [False, True])
def test_supcon_cross_matches_reference(temperature: float, masked: bool) -> None:
    a, o = _emb(1, B, D), _emb(2, B, D)
    am, om = (_mask(3, B), _mask(4, B)) if masked else (None, None)
    got = supcon_cross(a, o, LABELS, temperature, anchor_mask=am, other_mask=om)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(ref_supcon_cross(a, o, LABELS, temperature, am, om), abs=1e-10)


@pytest.mark.parametrize("temperature", [0.07, 0.5])
@pytest.mark.parametrize("masked", [False, True])
def test_supcon_within_matches_reference(temperature: float, masked: bool) -> None:
    e = _emb(5, B, D)
    m = _mask(6, B) if masked else None
    got = supcon_within(e, LABELS, temperature, mask=m)
    assert got.item() == pytest.approx(ref_supcon_within(e, LABELS, temperature, m), abs=1e-10)


def test_info_nce_equals_clip_cross_entropy() -> None:
    a, b = _emb(7, B, D), _emb(8, B, D)
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / 0.1
    target = torch.arange(B)
    clip = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    torch.testing.assert_close(info_nce(a, b, 0.1), clip, rtol=0, atol=1e-12)


def test_info_nce_masked_matches_reference() -> None:
    a, b = _emb(7, B, D), _emb(8, B, D)
    am, bm = _mask(9, B), _mask(10, B)
    got = info_nce(a, b, 0.1, a_mask=am, b_mask=bm)
    assert got.item() == pytest.approx(ref_info_nce(a, b, 0.1, am, bm), abs=1e-10)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_mil_nce_matches_reference(symmetric: bool, masked: bool) -> None:
    v, txt = _emb(11, B, D), _emb(12, B, 3, D)
    tm = vm = None
    if masked:
        tm = torch.rand(B, 3, generator=torch.Generator().manual_seed(13)) < 0.7
        tm[2] = False  # a clip without any text segment
        vm = _mask(14, B)
    got = mil_nce(v, txt, 0.1, text_mask=tm, video_mask=vm, symmetric=symmetric)
    assert got.item() == pytest.approx(ref_mil_nce(v, txt, 0.1, tm, vm, symmetric), abs=1e-10)


def test_mil_nce_single_segment_is_info_nce_direction() -> None:
    """With P = 1 and no masks, MIL-NCE (non-symmetric) is InfoNCE video→text."""
    v, txt = _emb(15, B, D), _emb(16, B, D)
    logits = F.normalize(v, dim=-1) @ F.normalize(txt, dim=-1).T / 0.2
    expected = F.cross_entropy(logits, torch.arange(B))
    torch.testing.assert_close(mil_nce(v, txt[:, None], 0.2), expected, rtol=0, atol=1e-12)


# ---- edge cases ---------------------------------------------------------------------------------------------------


def test_anchor_without_positive_is_excluded() -> None:
    """Class 4 occurs once: within-set it has no positive, so it is no anchor but stays a negative for the others."""
    e = _emb(17, B, D)
    zs, t = _unit(e), 0.1
    terms = []
    for i in range(B):
        if LABELS[i] == 4:
            continue
        cands = [j for j in range(B) if j != i]  # includes the singleton as a negative
        pos = [j for j in cands if LABELS[j] == LABELS[i]]
        log_den = _lse([float(zs[i] @ zs[j]) / t for j in cands])
        terms.append(-np.mean([float(zs[i] @ zs[p]) / t - log_den for p in pos]))
    loss = supcon_within(e, LABELS, t)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(float(np.mean(terms)), abs=1e-10)
    # across sets its own pair is a positive; with that pair masked it drops out as well
    a, o = _emb(48, B, D), _emb(49, B, D)
    om = LABELS != 4
    am = LABELS != 4
    torch.testing.assert_close(
        supcon_cross(a, o, LABELS, t, other_mask=om), supcon_cross(a, o, LABELS, t, anchor_mask=am, other_mask=om)
    )


def test_all_distinct_labels_within_gives_zero_with_grad() -> None:
    e = _emb(18, 5, D).requires_grad_()
    loss = supcon_within(e, torch.arange(5), 0.1)
    assert loss.item() == 0.0
    loss.backward()
    assert e.grad is not None
    assert torch.equal(e.grad, torch.zeros_like(e))


@pytest.mark.parametrize("name", ["cross", "within", "info_nce", "mil_nce", "mil_nce_sym", "avc", "imc"])
def test_all_masked_is_zero_with_finite_grads(name: str) -> None:
    a, v = _emb(19, B, D).requires_grad_(), _emb(20, B, D).requires_grad_()
    txt = _emb(21, B, 2, D).requires_grad_()
    off = torch.zeros(B, dtype=torch.bool)
    losses = {
        "cross": lambda: supcon_cross(a, v, LABELS, anchor_mask=off, other_mask=off),
        "within": lambda: supcon_within(a, LABELS, mask=off),
        "info_nce": lambda: info_nce(a, v, a_mask=off),
        "mil_nce": lambda: mil_nce(v, txt, text_mask=torch.zeros(B, 2, dtype=torch.bool)),
        "mil_nce_sym": lambda: mil_nce(v, txt, video_mask=off, symmetric=True),
        "avc": lambda: AVCLoss()(a, v, LABELS, audio_mask=off),
        "imc": lambda: IMCLoss()(a, v, LABELS, audio_mask=off, video_mask=off),
    }
    loss = losses[name]()
    assert loss.item() == 0.0
    loss.backward()
    grads = [t.grad for t in (a, v, txt) if t.grad is not None]
    assert grads, "the zero loss must still be attached to the graph"
    for g in grads:
        assert torch.isfinite(g).all()
        assert torch.equal(g, torch.zeros_like(g))


def test_no_anchor_with_valid_candidates_is_finite() -> None:
    """Anchors valid but every candidate masked: no NaN anywhere (the -inf trap)."""
    a, o = _emb(22, B, D).requires_grad_(), _emb(23, B, D).requires_grad_()
    loss = supcon_cross(a, o, LABELS, 0.05, other_mask=torch.zeros(B, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(a.grad).all() and torch.isfinite(o.grad).all()


# ---- masks: excluded == removed, and a masked row's content is irrelevant -------------------------------------------

DROP = [3, 8]


def _without(x: torch.Tensor) -> torch.Tensor:
    keep = torch.ones(x.shape[0], dtype=torch.bool)
    keep[DROP] = False
    return x[keep]


def _drop_mask(*shape: int) -> torch.Tensor:
    m = torch.ones(*shape, dtype=torch.bool)
    m[DROP] = False
    return m


def test_masked_sample_equals_removed_sample() -> None:
    a, v, txt = _emb(24, B, D), _emb(25, B, D), _emb(26, B, 3, D)
    m, tm = _drop_mask(B), _drop_mask(B, 3)
    a_, v_, y_, txt_ = _without(a), _without(v), _without(LABELS), _without(txt)
    pairs = [
        (supcon_cross(a, v, LABELS, 0.1, anchor_mask=m, other_mask=m), supcon_cross(a_, v_, y_, 0.1)),
        (supcon_within(a, LABELS, 0.1, mask=m), supcon_within(a_, y_, 0.1)),
        (info_nce(a, v, 0.1, a_mask=m, b_mask=m), info_nce(a_, v_, 0.1)),
        (mil_nce(v, txt, 0.1, text_mask=tm, video_mask=m), mil_nce(v_, txt_, 0.1)),
        (mil_nce(v, txt, 0.1, text_mask=tm, video_mask=m, symmetric=True), mil_nce(v_, txt_, 0.1, symmetric=True)),
        (AVCLoss(0.1)(a, v, LABELS, audio_mask=m, video_mask=m), AVCLoss(0.1)(a_, v_, y_)),
        (IMCLoss(0.1)(a, v, LABELS, audio_mask=m, video_mask=m), IMCLoss(0.1)(a_, v_, y_)),
    ]
    for i, (masked, removed) in enumerate(pairs):
        torch.testing.assert_close(masked, removed, rtol=0, atol=1e-12, msg=f"case {i}")


def test_missing_audio_content_is_ignored() -> None:
    """Clips without audio: zeros or garbage in their audio rows give the same AVC/IMC (no zero is trusted)."""
    a, v = _emb(27, B, D), _emb(28, B, D)
    has_audio = _drop_mask(B)
    zeros, garbage = a.clone(), a.clone()
    zeros[DROP] = 0.0
    garbage[DROP] = 1e3 * torch.randn(len(DROP), D, dtype=torch.float64)
    for loss in (AVCLoss(0.1), IMCLoss(0.1)):
        l_zero = loss(zeros, v, LABELS, audio_mask=has_audio)
        l_garbage = loss(garbage, v, LABELS, audio_mask=has_audio)
        torch.testing.assert_close(l_zero, l_garbage, rtol=0, atol=1e-12)
        assert l_zero.item() != pytest.approx(loss(zeros, v, LABELS).item(), abs=1e-6)  # the mask does matter


# ---- temperature, normalisation, modules --------------------------------------------------------------------------


def test_temperature_scaling() -> None:
    """Without normalisation, scaling the anchors by c is the same as dividing the temperature by c."""
    a, o = _emb(29, B, D), _emb(30, B, D)
    for c in (0.5, 3.0):
        lhs = supcon_cross(a * c, o, LABELS, 0.2, normalize=False)
        rhs = supcon_cross(a, o, LABELS, 0.2 / c, normalize=False)
        torch.testing.assert_close(lhs, rhs, rtol=0, atol=1e-10)
        # within one set both sides scale: s_ij picks up c**2
        torch.testing.assert_close(
            supcon_within(a * c, LABELS, 0.2, normalize=False), supcon_within(a, LABELS, 0.2 / c**2, normalize=False)
        )
    # normalize=True ignores the scale of the inputs
    torch.testing.assert_close(supcon_cross(a * 7.0, o, LABELS, 0.2), supcon_cross(a, o, LABELS, 0.2))
    # lower temperature sharpens: with aligned pairs, the loss falls as T falls
    aligned = o + 0.01 * a
    assert supcon_cross(aligned, o, torch.arange(B), 0.05) < supcon_cross(aligned, o, torch.arange(B), 0.5)


def test_bad_temperature_raises() -> None:
    with pytest.raises(ValueError, match="temperature"):
        supcon_cross(_emb(0, 2, 3), _emb(1, 2, 3), torch.tensor([0, 0]), 0.0)


def test_tensor_temperature_matches_float_and_gets_grad() -> None:
    a, o = _emb(31, B, D), _emb(32, B, D)
    t = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    loss = supcon_cross(a, o, LABELS, t)
    torch.testing.assert_close(loss, supcon_cross(a, o, LABELS, 0.1))
    loss.backward()
    assert t.grad is not None and t.grad.abs() > 0


def test_modules_compose_the_functions() -> None:
    a, v = _emb(33, B, D), _emb(34, B, D)
    am, vm = _mask(35, B), _mask(36, B)
    avc = AVCLoss(0.2)(a, v, LABELS, audio_mask=am, video_mask=vm)
    expected = 0.5 * (ref_supcon_cross(a, v, LABELS, 0.2, am, vm) + ref_supcon_cross(v, a, LABELS, 0.2, vm, am))
    assert avc.item() == pytest.approx(expected, abs=1e-10)
    imc = IMCLoss(0.2)(a, v, LABELS, audio_mask=am, video_mask=vm)
    expected = 0.5 * (ref_supcon_within(a, LABELS, 0.2, am) + ref_supcon_within(v, LABELS, 0.2, vm))
    assert imc.item() == pytest.approx(expected, abs=1e-10)


def test_learnable_temperature_and_clamp() -> None:
    loss_fn = AVCLoss(0.07, learnable_temperature=True)
    assert loss_fn.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    a, v = _emb(37, B, D, dtype=torch.float32), _emb(38, B, D, dtype=torch.float32)
    loss_fn(a, v, LABELS).backward()
    assert loss_fn.logit_scale.grad is not None and loss_fn.logit_scale.grad.abs() > 0
    torch.testing.assert_close(loss_fn(a, v, LABELS), AVCLoss(0.07)(a, v, LABELS))

    with torch.no_grad():
        loss_fn.logit_scale.fill_(math.log(1000.0))  # beyond CLIP's cap
    assert float(torch.as_tensor(loss_fn.temperature).detach()) == pytest.approx(0.01)
    loss_fn.logit_scale.grad = None
    loss_fn(a, v, LABELS).backward()
    assert loss_fn.logit_scale.grad.item() == 0.0  # clamped in forward
    loss_fn.clamp_logit_scale_()
    assert loss_fn.logit_scale.item() == pytest.approx(math.log(100.0))
    assert list(IMCLoss().parameters()) == []  # fixed temperature: nothing to learn


def test_bfloat16_inputs_are_computed_in_float32() -> None:
    a, v = _emb(39, B, D, dtype=torch.float32), _emb(40, B, D, dtype=torch.float32)
    low = AVCLoss(0.1)(a.bfloat16(), v.bfloat16(), LABELS)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, AVCLoss(0.1)(a, v, LABELS), rtol=0, atol=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = supcon_cross(a, v, LABELS, 0.1)
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, supcon_cross(a, v, LABELS, 0.1), rtol=0, atol=1e-6)


def test_shape_errors() -> None:
    with pytest.raises(ValueError):
        supcon_cross(_emb(0, 4, 3), _emb(1, 5, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError):
        supcon_within(_emb(0, 4, 3), torch.zeros(4, dtype=torch.long), mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError):
        mil_nce(_emb(0, 4, 3), _emb(1, 4, 3))


# ---- gradcheck (float64, tiny) ------------------------------------------------------------------------------------

Y5 = torch.tensor([0, 1, 0, 1, 2])
M5 = torch.tensor([True, True, False, True, True])


def test_gradcheck_supcon_cross() -> None:
    a, o = _emb(41, 5, 3).requires_grad_(), _emb(42, 5, 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: supcon_cross(x, y, Y5, 0.3, anchor_mask=M5), (a, o))
    assert torch.autograd.gradcheck(lambda x, y: supcon_cross(x, y, Y5, 0.3, other_mask=M5, normalize=False), (a, o))


def test_gradcheck_supcon_within() -> None:
    e = _emb(43, 5, 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: supcon_within(x, Y5, 0.3, mask=M5), (e,))


@pytest.mark.parametrize("symmetric", [False, True])
def test_gradcheck_mil_nce(symmetric: bool) -> None:
    v, txt = _emb(44, 4, 3).requires_grad_(), _emb(45, 4, 2, 3).requires_grad_()
    tm = torch.tensor([[True, True], [True, False], [False, False], [True, True]])
    assert torch.autograd.gradcheck(lambda x, t: mil_nce(x, t, 0.3, text_mask=tm, symmetric=symmetric), (v, txt))


def test_gradcheck_info_nce() -> None:
    a, b = _emb(46, 4, 3).requires_grad_(), _emb(47, 4, 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: info_nce(x, y, 0.3, a_mask=M5[:4]), (a, b))
