"""AVE-Net / AVOL-Net heads (models/localization.py); the encoders' maps (ViTEncoder.forward_features_with_map)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from avformer.models.localization import AVEHead, AVOLHead, TemporalEmbedding
from avformer.models.registry import create_model


def _identity_avol(dim: int, **kw: object) -> AVOLHead:
    """An AVOL head whose embeddings pass non-negative inputs through unchanged (E = C, identity layers)."""
    head = AVOLHead(dim, dim, dim, temporal_kernel=1, **kw)  # type: ignore[arg-type]
    with torch.no_grad():
        for emb in (head.video, head.audio):
            for fc in (emb.fc1, emb.fc2):
                fc.weight.copy_(torch.eye(dim))
                fc.bias.zero_()
    return head


def test_temporal_embedding_is_a_temporal_convolution() -> None:
    torch.manual_seed(0)
    emb = TemporalEmbedding(4, 6, temporal_kernel=3)
    conv1 = nn.Conv3d(4, 6, (3, 1, 1), padding=(1, 0, 0))
    conv2 = nn.Conv3d(6, 6, 1)
    with torch.no_grad():  # fc1's input is frames t-1, t, t+1 concatenated: conv tap j is fc1's block j
        conv1.weight.copy_(emb.fc1.weight.view(6, 3, 4).permute(0, 2, 1)[..., None, None])
        conv1.bias.copy_(emb.fc1.bias)
        conv2.weight.copy_(emb.fc2.weight[..., None, None, None])
        conv2.bias.copy_(emb.fc2.bias)
    x = torch.randn(2, 4, 5, 3, 2)
    assert torch.allclose(emb(x), conv2(torch.relu(conv1(x))), atol=1e-5)
    seq = torch.randn(2, 4, 5)  # audio: no place axes
    assert torch.allclose(emb(seq), emb(seq[..., None, None])[..., 0, 0], atol=1e-6)


def test_spatial_kernel_is_a_spatio_temporal_convolution() -> None:
    """spatial_kernel 3: fc1 reads the 3 x 3 places around each place (zero outside the map) over 3 frames: the same
    map as a Conv3d (3 x 3 x 3); with spatial_kernel 1 a place never sees its neighbours."""
    torch.manual_seed(0)
    emb = TemporalEmbedding(4, 6, temporal_kernel=3, spatial_kernel=3)
    conv1 = nn.Conv3d(4, 6, 3, padding=1)
    conv2 = nn.Conv3d(6, 6, 1)
    with torch.no_grad():  # fc1's input: frames t-1..t+1 (outer) of places (dy, dx) row-major (inner), C innermost
        conv1.weight.copy_(emb.fc1.weight.view(6, 3, 3, 3, 4).permute(0, 4, 1, 2, 3))
        conv1.bias.copy_(emb.fc1.bias)
        conv2.weight.copy_(emb.fc2.weight[..., None, None, None])
        conv2.bias.copy_(emb.fc2.bias)
    x = torch.randn(2, 4, 5, 4, 3)
    assert torch.allclose(emb(x), conv2(torch.relu(conv1(x))), atol=1e-5)
    poke = x.clone()
    poke[:, :, :, 0, 0] += 1.0  # change one place: its neighbour (1, 1) moves with ks 3 and not with ks 1
    assert not torch.allclose(emb(poke)[..., 1, 1], emb(x)[..., 1, 1])
    local = TemporalEmbedding(4, 6, temporal_kernel=3, spatial_kernel=1)
    assert torch.equal(local(poke)[..., 1, 1], local(x)[..., 1, 1])
    with pytest.raises(ValueError, match="spatial_kernel"):
        AVOLHead(4, 4, 6, spatial_kernel=2)


# ---- AVOL ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["clip", "location"])
def test_avol_clip_logit_is_the_max_and_only_the_argmax_gets_gradient(norm: str) -> None:
    torch.manual_seed(0)
    head = AVOLHead(6, 5, 8, norm=norm)
    v = torch.randn(3, 8, 4, 3, 5, requires_grad=True)  # place embeddings (B, E, T, h, w)
    a = torch.randn(3, 8, 4)
    out = head.score(v, a)
    assert out.logit_map.shape == (3, 3, 5) and out.logit.shape == (3,)
    assert torch.equal(out.logit, out.logit_map.flatten(1).amax(1))
    # MIL pooling: d logit / d logit_map is one-hot at each clip's argmax
    (g,) = torch.autograd.grad(out.logit.sum(), out.logit_map, retain_graph=True)
    flat = g.flatten(1)
    assert torch.equal(flat.argmax(1), out.logit_map.flatten(1).argmax(1))
    assert torch.equal(flat.sum(1), torch.ones(3)) and int((flat != 0).sum()) == 3
    (gv,) = torch.autograd.grad(out.logit.sum(), v)
    per_place = gv.abs().sum((1, 2)).flatten(1)  # (B, h·w)
    argmax = out.logit_map.flatten(1).argmax(1)
    assert (per_place[torch.arange(3), argmax] > 0).all()
    if norm == "location":  # the place's own norm: nothing reaches the other places
        others = per_place.clone()
        others[torch.arange(3), argmax] = 0
        assert float(others.abs().max()) == 0.0


@pytest.mark.parametrize("norm", ["clip", "location"])
def test_avol_aligned_peak_is_the_place_whose_time_course_follows_the_audio(norm: str) -> None:
    """A hand-built map: every place has events at random times, one has them when the sound has bursts."""
    g = torch.Generator().manual_seed(1)
    T, h, w, C = 16, 4, 5, 3
    bursts = torch.zeros(T)
    bursts[[2, 7, 12]] = 1.0
    head = _identity_avol(C, time="aligned", norm=norm)
    for place in [(1, 2), (3, 0), (0, 4)]:  # the sounding object moves: the peak follows it
        vmap = (torch.rand(1, C, T, h, w, generator=g) < 0.2).float()
        vmap[0, :, :, place[0], place[1]] = bursts  # this place changes when the sound does
        audio = bursts.expand(1, C, T)
        out = head(vmap, audio)
        assert divmod(int(out.logit_map.flatten().argmax()), w) == place
        # appearance does not count in the aligned mode: a bright static place is not the peak
        vmap[0, :, :, 0, 0] = 50.0
        assert divmod(int(head(vmap, audio).logit_map.flatten().argmax()), w) == place


def test_avol_pooled_peak_is_the_place_that_looks_like_the_sound() -> None:
    g = torch.Generator().manual_seed(2)
    C, h, w = 6, 3, 3
    head = _identity_avol(C, time="pooled", norm="location")
    audio_vec = torch.rand(C, generator=g)
    vmap = torch.rand(1, C, 2, h, w, generator=g)
    vmap[0, :, :, 2, 1] = audio_vec[:, None] * 3.0  # the same direction as the audio, constant over time
    out = head(vmap, audio_vec[None, :, None].expand(1, C, 5))
    assert divmod(int(out.logit_map.flatten().argmax()), w) == (2, 1)
    assert math.isclose(float(out.similarity[0, 2, 1].detach()), 1.0, rel_tol=1e-5)  # the paper's cosine


def test_avol_resamples_audio_onto_the_video_frames_and_checks_shapes() -> None:
    head = AVOLHead(4, 3, 8)
    out = head(torch.randn(2, 4, 6, 2, 2), torch.randn(2, 3, 25))
    assert out.logit_map.shape == (2, 2, 2)
    assert head.embed_audio(torch.randn(2, 3, 25), 6).shape == (2, 8, 6)
    with pytest.raises(ValueError, match="video_map"):
        head(torch.randn(2, 4, 2, 2), torch.randn(2, 3, 25))
    with pytest.raises(ValueError, match="time"):
        AVOLHead(4, 3, time="sometimes")
    with pytest.raises(ValueError, match="temporal_kernel"):
        AVOLHead(4, 3, temporal_kernel=2)


# ---- AVE -----------------------------------------------------------------------------------------------------------
def test_ave_distance_head() -> None:
    torch.manual_seed(0)
    head = AVEHead(5, 7, 16)
    v, a = torch.randn(4, 5), torch.randn(4, 7)
    out = head(v, a)
    assert out.logits.shape == (4, 2) and out.distance.shape == (4,)
    assert ((out.distance >= 0) & (out.distance <= 2 + 1e-5)).all()
    ev, ea = head.embed("video", v), head.embed("audio", a)
    assert torch.allclose(ev.norm(dim=1), torch.ones(4), atol=1e-5)  # L2-normalised embeddings
    assert torch.allclose(out.distance, (ev - ea).norm(dim=1), atol=1e-6)
    # the initial last layer: match - mismatch = 5 (√2 - d); identical embeddings say "match"
    diff = out.logits[:, 1] - out.logits[:, 0]
    assert torch.allclose(diff, 5 * (math.sqrt(2) - out.distance), atol=1e-5)
    loss = nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 0, 1]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())


# ---- encoders' feature maps ----------------------------------------------------------------------------------------
_TINY = {
    "embed_dim": 32,
    "depth": 1,
    "num_heads": 2,
    "num_frames": 4,
    "img_size": 16,
    "spec_size": (16, 20),
    "pool": "mean",
}


def test_cnn_stem_maps_match_the_tokens_and_move_with_the_picture() -> None:
    torch.manual_seed(0)
    model = create_model("vatt_tiny", video_stem="frame_cnn", audio_input="spectrogram", audio_stem="cnn",
                         stem_stride=4, stem_width=16, **_TINY).eval()  # fmt: skip
    video, audio = torch.randn(2, 3, 4, 16, 16), torch.randn(2, 1, 16, 20)
    for name, x, shape in (("video", video, (2, 16, 4, 4, 4)), ("audio", audio, (2, 16, 4, 5))):
        enc = model.encoders[name]
        with torch.no_grad():
            ref = enc.forward_features(x)
            out, fmap = enc.forward_features_with_map(x)
        assert fmap.shape == shape
        assert out.grid == ref.grid
        assert torch.allclose(out.tokens, ref.tokens, atol=1e-6) and torch.allclose(out.pooled, ref.pooled, atol=1e-6)
    # a picture moved by one place (the stem's stride) moves the map by one place, away from the borders
    enc = model.encoders["video"]
    blob = torch.zeros(1, 3, 4, 16, 16)
    blob[..., 4:8, 4:8] = 3.0
    with torch.no_grad():
        m0 = enc.forward_features_with_map(blob)[1]
        m1 = enc.forward_features_with_map(torch.roll(blob, shifts=(4, 4), dims=(-2, -1)))[1]
    assert torch.allclose(m0[..., 1, 1], m1[..., 2, 2], atol=1e-5)


def test_tubelet_map_is_the_tokens_on_their_grid() -> None:
    torch.manual_seed(0)
    model = create_model("vatt_tiny", video_stem="linear", tubelet_size=(2, 8, 8), **_TINY).eval()
    enc = model.encoders["video"]
    x = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        out, fmap = enc.forward_features_with_map(x)
    assert out.grid == (2, 2, 2) and fmap.shape == (2, 32, 2, 2, 2)
    t, i, j = 1, 0, 1
    assert torch.equal(fmap[:, :, t, i, j], out.tokens[:, t * 4 + i * 2 + j])  # row-major (t, h, w)
