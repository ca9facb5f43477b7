"""Heads of "Objects that Sound": AVE-Net's distance head and AVOL-Net's localisation head.

Paper: Arandjelović & Zisserman, "Objects that Sound", ECCV 2018, https://arxiv.org/abs/1712.06651 (the
audio-visual correspondence task of "Look, Listen and Learn", ICCV 2017, https://arxiv.org/abs/1705.08168).
There is no official code; the heads follow the paper's description. The encoders are avformer's (the task,
:mod:`avformer.tasks.correspondence`, feeds them), the objective (cross-entropy on "these belong together or not")
lives in the task.

AVE-Net (``AVEHead``)::

    video pooled (B, Dv) ─ fc ─ ReLU ─ fc ─ L2-norm ─┐
                                                   ├─ ‖v - a‖₂ (B, 1) ─ fc(1 → 2) ─▶ logits [mismatch, match]
    audio pooled (B, Da) ─ fc ─ ReLU ─ fc ─ L2-norm ─┘

AVOL-Net (``AVOLHead``): the video encoder's feature map is embedded at every place (1×1 convolutions, as the
paper's conv7/conv8), the audio into the same space, their similarity at each place is mapped by a learned scale and
bias to a logit, and the clip's logit is the *maximum* over places (multiple-instance learning: the clip corresponds
when some place does). Only the argmax place gets a gradient. No box is ever used; the map of place logits is the
localisation heatmap::

    video map (B, Cv, T, h, w) ─ conv(kt×1×1) ─ ReLU ─ conv 1×1 ─▶ v (B, E, T, h, w) ┐
    audio seq (B, Ca, T')      ─ resample to T ─ conv(kt) ─ ReLU ─ conv 1 ─▶ a (B, E, T) ┤
                                     sim(h, w) = <v(h, w), a> / norms ─ scale·sim + bias ─▶ map (B, h, w) ─ max ─▶ logit

Two ways to compare over time (``time``):

* ``"pooled"``, the paper (one frame, one second of sound): the place embeddings and the audio embedding are
  averaged over time and compared by cosine similarity. It finds the object whose *appearance* goes with the sound
  (a guitar that looks like the guitar sound); what does not look like anything in particular cannot be found.
* ``"aligned"`` (ours): the embeddings keep their time axis (the video's frames; the audio resampled onto them),
  are centred over time, and compared as whole sequences: ``sim(h, w) = <ṽ(·, h, w), ã(·)>`` over (E, T). A place
  scores high when *what changes there changes when the sound changes*: it finds the object whose events coincide
  with the bursts, whatever it looks like. Centring removes what is constant over the clip (appearance), so this
  mode cannot use appearance at all.

Normalisation (``norm``): ``"location"`` divides by each place's own norm (the paper's cosine: the purest match
wins, however weak); ``"clip"`` divides every place by the root-mean-square norm over the clip's places (a place
that changes more weighs more: the object's own pixels beat a corner of the receptive field that catches its edge).
On the synthetic event data ``clip`` put the peak on the object more often (docs/localization.md).

Differences from the paper: the ``aligned`` time mode and the ``clip`` normalisation (above); the temporal kernel
``kt`` of the first layers (1 = the paper's 1×1; 3 lets a place see a change from frame to frame); the scale and
bias start at 10 and -5 (similarity 0.5 ↦ p = 0.5; the paper does not give its initialisation); AVE's last layer
starts at ``logit_match - logit_mismatch = 5 (√2 - d)`` (orthogonal embeddings are a coin toss) rather than at
random; no batch norm in the heads (the encoders have their own).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AVOL_NORMS", "AVOL_TIMES", "AVEHead", "AVEOutput", "AVOLHead", "AVOLOutput", "TemporalEmbedding"]

AVOL_TIMES = ("aligned", "pooled")
AVOL_NORMS = ("clip", "location")
_EPS = 1e-6


@dataclass
class AVEOutput:
    """What :class:`AVEHead` returns.

    Attributes:
        logits: (B, 2) over ``[mismatch, match]`` (no softmax).
        distance: (B,) Euclidean distance between the two L2-normalised embeddings, in [0, 2].
    """

    logits: Tensor
    distance: Tensor


class AVEHead(nn.Module):
    """AVE-Net: do this video and this sound belong together? (see the module docstring).

    Args:
        video_dim: width of the video encoder's pooled feature.
        audio_dim: width of the audio encoder's pooled feature.
        embed_dim: width of the shared embedding space (paper: 128).
    """

    def __init__(self, video_dim: int, audio_dim: int, embed_dim: int = 128) -> None:
        super().__init__()
        self.video = nn.Sequential(nn.Linear(video_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim))
        self.audio = nn.Sequential(nn.Linear(audio_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim))
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():  # logit_match - logit_mismatch = 5 (√2 - d): orthogonal embeddings start undecided
            self.fc.weight.copy_(torch.tensor([[2.5], [-2.5]]))
            self.fc.bias.copy_(torch.tensor([-2.5 * math.sqrt(2.0), 2.5 * math.sqrt(2.0)]))

    def embed(self, modality: str, pooled: Tensor) -> Tensor:
        """(B, D) pooled features of ``modality`` (``video`` / ``audio``) -> (B, E) L2-normalised embeddings."""
        mlp = {"video": self.video, "audio": self.audio}[modality]
        return F.normalize(mlp(pooled.float()), dim=-1, eps=_EPS)

    def forward(self, video: Tensor, audio: Tensor) -> AVEOutput:
        """Score pairs: row ``i`` of ``video`` (B, Dv) against row ``i`` of ``audio`` (B, Da)."""
        dist = (self.embed("video", video) - self.embed("audio", audio)).norm(dim=-1)  # (B,)
        return AVEOutput(logits=self.fc(dist[:, None]), distance=dist)


class TemporalEmbedding(nn.Module):
    """Per place: a convolution over ``temporal_kernel`` frames and, with two place axes, ``spatial_kernel`` ×
    ``spatial_kernel`` places around it (zero-padded), ReLU, a 1×1 convolution; written as two matrix products on
    channels-last tensors (the same maps as Conv3d (kt×ks×ks) + Conv3d 1×1, several times faster on CPU).

    ``forward``: (B, C, T, *places) -> (B, E, T, *places), any number of place axes (none for audio).
    """

    def __init__(self, in_dim: int, embed_dim: int, temporal_kernel: int = 1, spatial_kernel: int = 1) -> None:
        super().__init__()
        self.temporal_kernel, self.spatial_kernel = temporal_kernel, spatial_kernel
        # input: frames t - kt//2 .. t + kt//2 of the places around, concatenated
        self.fc1 = nn.Linear(temporal_kernel * spatial_kernel**2 * in_dim, embed_dim)
        self.fc2 = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        n = x.ndim
        kt, ks = self.temporal_kernel, self.spatial_kernel
        if ks > 1:  # a Conv3d with fc1's weights (oneDNN's convolution; gathering the 27 neighbours is far slower)
            if n != 5:
                raise ValueError(f"spatial_kernel > 1 needs (B, C, T, h, w), got shape {tuple(x.shape)}")
            E, C = self.fc1.out_features, x.shape[1]
            weight = self.fc1.weight.view(E, kt, ks, ks, C).permute(0, 4, 1, 2, 3)
            y = F.relu(F.conv3d(x, weight, self.fc1.bias, padding=(kt // 2, ks // 2, ks // 2)))  # (B, E, T, h, w)
            return self.fc2(y.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
        x = x.permute(0, *range(3, n), 2, 1)  # (B, *places, T, C)
        k = self.temporal_kernel
        if k > 1:
            T = x.shape[-2]
            xp = F.pad(x, (0, 0, k // 2, k // 2))  # zeros before the first and after the last frame
            x = torch.cat([xp[..., j : j + T, :] for j in range(k)], dim=-1)  # (B, *places, T, k·C)
        y = self.fc2(F.relu(self.fc1(x)))  # (B, *places, T, E)
        return y.permute(0, n - 1, n - 2, *range(1, n - 2))  # (B, E, T, *places)


@dataclass
class AVOLOutput:
    """What :class:`AVOLHead` returns.

    Attributes:
        logit_map: (B, h, w) logit of every place (``scale · similarity + bias``): the localisation heatmap.
        logit: (B,) the clip's correspondence logit, the maximum of ``logit_map`` (multiple-instance learning).
        similarity: (B, h, w) the similarity before scale and bias.
    """

    logit_map: Tensor
    logit: Tensor
    similarity: Tensor


class AVOLHead(nn.Module):
    """AVOL-Net: where in the picture is the sound? (see the module docstring).

    Args:
        video_dim: channels of the video feature map.
        audio_dim: channels of the audio feature sequence.
        embed_dim: width of the shared embedding space (paper: 128).
        time: ``"aligned"`` (compare time courses; ours) or ``"pooled"`` (compare time averages; the paper).
        norm: ``"clip"`` (one norm per clip; ours) or ``"location"`` (one per place: the paper's cosine).
        temporal_kernel: odd temporal extent of the first convolution of both embeddings (1 = the paper's 1×1).
        spatial_kernel: odd spatial extent of the video embedding's first convolution (1 = the paper's 1×1; 3 lets a
            place see the places around it: an object larger than a place changes as a whole).
        scale: initial scale of the similarity.
        bias: initial bias.
    """

    def __init__(
        self,
        video_dim: int,
        audio_dim: int,
        embed_dim: int = 128,
        *,
        time: str = "aligned",
        norm: str = "clip",
        temporal_kernel: int = 3,
        spatial_kernel: int = 1,
        scale: float = 10.0,
        bias: float = -5.0,
    ) -> None:
        super().__init__()
        if time not in AVOL_TIMES:
            raise ValueError(f"time must be one of {AVOL_TIMES}, got {time!r}")
        if norm not in AVOL_NORMS:
            raise ValueError(f"norm must be one of {AVOL_NORMS}, got {norm!r}")
        if temporal_kernel < 1 or temporal_kernel % 2 == 0:
            raise ValueError(f"temporal_kernel must be odd and >= 1, got {temporal_kernel}")
        self.time, self.norm = time, norm
        if spatial_kernel < 1 or spatial_kernel % 2 == 0:
            raise ValueError(f"spatial_kernel must be odd and >= 1, got {spatial_kernel}")
        self.video = TemporalEmbedding(video_dim, embed_dim, temporal_kernel, spatial_kernel)
        self.audio = TemporalEmbedding(audio_dim, embed_dim, temporal_kernel)
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.bias = nn.Parameter(torch.tensor(float(bias)))

    def embed_video(self, video_map: Tensor) -> Tensor:
        """(B, Cv, T, h, w) feature map -> (B, E, T, h, w) place embeddings (one frame: T = 1)."""
        if video_map.ndim != 5:
            raise ValueError(f"video_map must be (B, C, T, h, w), got shape {tuple(video_map.shape)}")
        return self.video(video_map.float())

    def embed_audio(self, audio_seq: Tensor, num_frames: int) -> Tensor:
        """(B, Ca, T') features over time -> (B, E, num_frames): resampled onto the video's frames (linear; both
        cover the same window), then embedded."""
        if audio_seq.ndim != 3:
            raise ValueError(f"audio_seq must be (B, C, T'), got shape {tuple(audio_seq.shape)}")
        x = audio_seq.float()
        if x.shape[-1] != num_frames:
            x = F.interpolate(x, size=num_frames, mode="linear", align_corners=False)
        return self.audio(x)

    def similarity(self, video_emb: Tensor, audio_emb: Tensor) -> Tensor:
        """(B, h, w) similarity of place embeddings (B, E, T, h, w) with audio embeddings (B, E, T), row by row."""
        if self.time == "pooled":
            v, a = video_emb.mean(2), audio_emb.mean(2)  # (B, E, h, w), (B, E)
            dot = torch.einsum("behw,be->bhw", v, a)
            vnorm = v.norm(dim=1)  # (B, h, w)
        else:
            v = video_emb - video_emb.mean(2, keepdim=True)  # centred over time: what changes, not what is there
            a = audio_emb - audio_emb.mean(2, keepdim=True)
            dot = torch.einsum("bethw,bet->bhw", v, a)
            vnorm = v.square().sum((1, 2)).sqrt()  # (B, h, w): over (E, T)
        anorm = a.flatten(1).norm(dim=1)[:, None, None]  # (B, 1, 1)
        if self.norm == "clip":
            vnorm = vnorm.square().mean((1, 2), keepdim=True).sqrt()  # (B, 1, 1): the places' RMS norm
        return dot / (vnorm * anorm).clamp_min(_EPS)

    def score(self, video_emb: Tensor, audio_emb: Tensor) -> AVOLOutput:
        """Heatmap and clip logit of pairs: row ``i`` of the place embeddings with row ``i`` of the audio ones."""
        sim = self.similarity(video_emb, audio_emb)
        logit_map = self.scale * sim + self.bias
        return AVOLOutput(logit_map=logit_map, logit=logit_map.flatten(1).amax(1), similarity=sim)

    def forward(self, video_map: Tensor, audio_seq: Tensor) -> AVOLOutput:
        """Score the video feature map (B, Cv, T, h, w) against the audio sequence (B, Ca, T') of the same rows."""
        v = self.embed_video(video_map)
        return self.score(v, self.embed_audio(audio_seq, v.shape[2]))
