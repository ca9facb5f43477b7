"""Masked-autoencoder parts for any encoder that takes the token keep-mask: random masking, patch targets, a light
decoder per modality and the reconstruction loss on the masked patches.

Papers:
    MAE: He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022, https://arxiv.org/abs/2111.06377
    CAV-MAE: Gong et al., "Contrastive Audio-Visual Masked Autoencoder", ICLR 2023, https://arxiv.org/abs/2210.07839
    MAViL: Huang et al., "MAViL: Masked Audio-Video Learners", NeurIPS 2023, https://arxiv.org/abs/2212.08071
Reference implementations read (not copied, not run here, so there is no parity test): facebookresearch/mae
(``models_mae.py``), YuanGongND/cav-mae (``src/models/cav_mae.py``).

Data flow (one modality)::

    x ─▶ patch_targets(encoder, x) ─────────────────────────────────────────────┐ (B, N, P) targets
    x ─▶ hide_masked ─▶ encoder.forward_features(x, keep=m.keep) ─▶ visible tokens (B, N_keep, D)
             (masked regions never reach the encoder)   │                        │
                                                     MaskedDecoder               │
              Linear ─▶ scatter into the full grid, mask token elsewhere ─▶ + sin-cos(grid) ─▶ blocks ─▶ (B, N, P)
                                                                                  │
                                          reconstruction_loss(pred, target, m.mask) : mean over masked patches

Which encoders can be masked (:func:`check_maskable`): ViT-family encoders (:class:`~avformer.models.vit.ViTEncoder`:
``ast_*``, ``vit_video_*``, ``vit_wave_*`` and the towers of ``vatt_*``) whose every token is one region of the
input that masking can keep away from the encoder:

* one linear projection of non-overlapping patches (``PatchEmbed2d`` / ``TubeletEmbed3d`` / ``WaveformPatchEmbed``
  with stride == kernel, no padding): a dropped token removes its patch from everything the encoder computes;
* one token per video frame from a 2-D CNN (``frame_cnn``): a masked frame never enters the CNN (the keep-mask
  selects frames before it); its target is the whole frame;
* one token per frequency band of a CNN over the log-mel (audio ``cnn``): the CNN's receptive field crosses band
  borders, so :func:`hide_masked` blanks the masked bands of the input (to 0, the normalised mean) before it; the
  target is the band (``stride`` mel bins × all frames).

Refused, with one line naming the supported ones: multiscale encoders (MAT / MViTv2: pooling attention needs the whole
grid), the ``conv`` stem (tubelet tokens whose receptive fields cross tubelet borders), overlapping AST patches (a
pixel belongs to several targets).

Differences from the references, and choices:
    * Masking (as MAE / CAV-MAE ``random_masking``): per sample, the tokens with the smallest uniform noise are kept,
      ``N_keep = floor(N · (1 - ratio))`` (at least 1, at most N - 1 so something is reconstructed; MAE's
      ``int()`` of the float product keeps 7 of 40 tokens at ratio 0.8, here 8). The keep indices
      are returned *sorted* (the encoders' keep-mask convention keeps grid order); MAE keeps them in shuffled order,
      which only permutes the visible sequence (attention is order-free once positions are added).
    * Decoder positions: fixed sin-cos per grid axis, concatenated (MAE's 2-D table generalised to 1-3 axes; each
      axis gets an even share of the width, the first axis the remainder), computed for the grid of the input so
      other input sizes work. The decoder has no class token (our encoders' ``tokens`` exclude prefix tokens).
    * Targets are the encoder's (normalised) input cut into the tokens' regions (:func:`patch_geometry`); the values
      inside a patch are ordered channel-last (``(pf, pt)`` for a spectrogram, ``(t, p, p, C)`` for a tubelet, as
      MAE's ``patchify``). ``norm_pix`` standardises each target patch (mean 0, variance 1; MAE's ``norm_pix_loss``).
    * Loss: mean squared error per patch, averaged over the masked patches of the batch (MAE). Optionally all
      patches (``masked_only=False``), for ablations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from avformer.layers.conv_embed import CNNTokenEmbed, ConvStemEmbed
from avformer.layers.patch_embed import PatchEmbed2d, TubeletEmbed3d, WaveformPatchEmbed
from avformer.layers.vit_block import Block
from avformer.models.base import EncoderOutput
from avformer.models.vit import ViTEncoder

__all__ = [
    "MASKABLE_ENCODERS",
    "DecoderConfig",
    "MaskedDecoder",
    "MaskingUnsupported",
    "TokenMask",
    "blanks_input",
    "check_maskable",
    "encode_masked",
    "hide_masked",
    "mask_for",
    "masked_mse",
    "normalize_patches",
    "patch_geometry",
    "patch_targets",
    "random_masking",
    "reconstruction_loss",
    "sincos_grid",
    "unpatchify",
]

MASKABLE_ENCODERS = (
    "ViT-family encoders with linear non-overlapping patches (ast_* with freq_stride/time_stride = patch, "
    "vit_video_*, vit_wave_*) or per-frame / per-band CNN tokens (vatt_* towers with video_stem linear or "
    "frame_cnn, audio_stem linear or cnn)"
)


class MaskingUnsupported(ValueError):
    """An encoder that masked modelling cannot drop tokens of (see :func:`check_maskable`)."""


# ---- which encoders -----------------------------------------------------------------------------------------------
def check_maskable(encoder: nn.Module, what: str = "encoder") -> None:
    """Raise :class:`MaskingUnsupported` (one line) unless every token of ``encoder`` is one region of the input
    that masking can hide from it (see the module docstring).

    Args:
        encoder: the encoder to mask.
        what: how the message names it (e.g. ``"video encoder"``).
    """
    name = type(encoder).__name__
    if not isinstance(encoder, ViTEncoder):
        why = "pools tokens over the whole grid" if hasattr(encoder, "finalize") else "takes no token keep-mask"
        raise MaskingUnsupported(f"masked modelling: the {what} ({name}) {why}; supported: {MASKABLE_ENCODERS}")
    pe = encoder.patch_embed
    if isinstance(pe, CNNTokenEmbed):
        return  # frames: each kept frame alone through the CNN; bands: masked bands are blanked before it
    if isinstance(pe, ConvStemEmbed):
        raise MaskingUnsupported(
            f"masked modelling: the {what} ({name}) has a conv stem whose receptive field crosses tubelet borders; "
            f"supported: {MASKABLE_ENCODERS}"
        )
    if not isinstance(pe, (PatchEmbed2d, TubeletEmbed3d, WaveformPatchEmbed)):
        raise MaskingUnsupported(
            f"masked modelling: the {what} ({name}) has no patch tokenizer ({type(pe).__name__}); "
            f"supported: {MASKABLE_ENCODERS}"
        )
    if pe.stride != pe.kernel_size or any(pe.padding):
        raise MaskingUnsupported(
            f"masked modelling: the {what} ({name}) has overlapping or padded patches (kernel {pe.kernel_size}, "
            f"stride {pe.stride}); supported: {MASKABLE_ENCODERS}"
        )


def blanks_input(encoder: nn.Module) -> bool:
    """Whether masking must blank the masked regions of the input before ``encoder``'s tokenizer (a CNN over
    frequency bands mixes neighbouring bands; linear patches and per-frame CNNs never see a dropped region)."""
    pe = getattr(encoder, "patch_embed", None)
    return isinstance(pe, CNNTokenEmbed) and not pe.keeps_before_stem


def hide_masked(encoder: nn.Module, x: Tensor, mask: Tensor, value: float = 0.0) -> Tensor:
    """``x`` with the input regions of the masked tokens set to ``value`` when the tokenizer needs it
    (:func:`blanks_input`), else ``x`` itself. ``mask``: (B, N) bool, True = masked."""
    if not blanks_input(encoder):
        return x
    grid, patch = patch_geometry(encoder, tuple(x.shape[1:]))
    covered = unpatchify(mask[..., None].expand(-1, -1, math.prod(patch) * x.shape[1]).float(), grid, patch, x.shape[1])
    region = (slice(None), slice(None), *(slice(0, n) for n in covered.shape[2:]))
    out = x.clone()
    out[region] = x[region].masked_fill(covered.bool(), value)
    return out


# ---- masking ------------------------------------------------------------------------------------------------------
@dataclass
class TokenMask:
    """Which tokens of a grid an encoder sees.

    Attributes:
        keep: (B, N_keep) int64, sorted indices of the visible tokens: the encoders' keep-mask
            (``forward_features(x, keep=...)``).
        mask: (B, N) bool, True where a token is masked (hidden from the encoder, reconstructed).
    """

    keep: Tensor
    mask: Tensor

    @property
    def num_tokens(self) -> int:
        return int(self.mask.shape[1])

    @property
    def num_keep(self) -> int:
        return int(self.keep.shape[1])


def random_masking(
    batch: int,
    num_tokens: int,
    ratio: float,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> TokenMask:
    """Per-sample uniform random masking of ``ratio`` of ``num_tokens`` tokens (MAE: argsort of uniform noise).

    Args:
        batch: ``B``.
        num_tokens: ``N``, the tokens of the full grid (``math.prod(encoder.token_grid(x.shape[1:]))``).
        ratio: fraction masked, in [0, 1); ``N_keep = floor(N · (1 - ratio))`` clamped to [1, N - 1] (N > 1).
        device: where the result lives.
        generator: optional RNG (on the CPU) for the noise; the global RNG otherwise.

    Returns:
        :class:`TokenMask` with ``keep`` (B, N_keep) sorted and ``mask`` (B, N).
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    if num_tokens < 2:
        raise ValueError(f"masking needs a grid of at least 2 tokens, got {num_tokens}")
    n_keep = min(max(1, math.floor(num_tokens * (1.0 - ratio) + 1e-6)), num_tokens - 1)  # 1e-6: 40 · 0.2 is 8
    if generator is not None:
        noise = torch.rand(batch, num_tokens, generator=generator).to(device)
    else:
        noise = torch.rand(batch, num_tokens, device=device)
    keep = noise.argsort(dim=1)[:, :n_keep].sort(dim=1).values  # (B, N_keep): smallest noise is kept
    mask = torch.ones(batch, num_tokens, dtype=torch.bool, device=keep.device)
    mask.scatter_(1, keep, False)
    return TokenMask(keep=keep, mask=mask)


def mask_for(
    encoder: nn.Module, x: Tensor, ratio: float, *, generator: torch.Generator | None = None, what: str = "encoder"
) -> TokenMask:
    """A random :class:`TokenMask` over the token grid of ``encoder`` for input ``x`` (checked maskable first)."""
    check_maskable(encoder, what)
    assert isinstance(encoder, ViTEncoder)
    n = math.prod(encoder.token_grid(tuple(x.shape[1:])))
    return random_masking(x.shape[0], n, ratio, device=x.device, generator=generator)


def encode_masked(
    encoder: nn.Module,
    x: Tensor,
    ratio: float,
    *,
    generator: torch.Generator | None = None,
    what: str = "encoder",
) -> tuple[EncoderOutput, TokenMask]:
    """Mask ``ratio`` of ``x``'s tokens at random and encode the visible ones.

    Returns:
        ``(out, m)``: ``out.tokens`` (B, N_keep, D) the visible tokens in grid order, ``out.pooled`` (B, D) their
        pooled feature, ``out.grid`` the full grid; ``m`` the :class:`TokenMask`.
    """
    m = mask_for(encoder, x, ratio, generator=generator, what=what)
    return encoder.forward_features(hide_masked(encoder, x, m.mask), keep=m.keep), m


# ---- targets ------------------------------------------------------------------------------------------------------
def patch_targets(encoder: nn.Module, x: Tensor) -> Tensor:
    """The input cut into the patches of ``encoder``'s patch embedding, in token order: (B, N, P).

    Args:
        encoder: a maskable encoder (:func:`check_maskable`).
        x: its input: (B, 1, F, T) spectrogram, (B, C, T, H, W) video or (B, C, S) waveform.

    Returns:
        (B, N, P) with ``P = prod(patch) · C`` (values channel-last inside a patch); trailing input that fills no
        whole patch is dropped, as the patch embedding drops it.
    """
    grid, kernel = patch_geometry(encoder, tuple(x.shape[1:]))
    B, C = x.shape[:2]
    x = x[(slice(None), slice(None), *(slice(0, g * k) for g, k in zip(grid, kernel, strict=True)))]
    # (B, C, g1, k1, g2, k2, ...) -> (B, g1, g2, ..., k1, k2, ..., C)
    shape = [B, C] + [d for g, k in zip(grid, kernel, strict=True) for d in (g, k)]
    n = len(kernel)
    perm = [0, *(2 + 2 * i for i in range(n)), *(3 + 2 * i for i in range(n)), 1]
    return x.reshape(shape).permute(perm).reshape(B, math.prod(grid), math.prod(kernel) * C)


def patch_geometry(encoder: nn.Module, input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(grid, patch)`` of the patches that ``encoder``'s tokens are, for one input of ``input_shape`` (without
    the batch axis, channels first): the patch size per input axis and the number of patches along each axis
    (``prod(grid)`` = the tokens). A per-frame CNN's token is a whole frame: patch ``(1, H, W)``, grid ``(T, 1, 1)``.
    """
    check_maskable(encoder)
    assert isinstance(encoder, ViTEncoder)
    pe = encoder.patch_embed
    spatial = tuple(input_shape[1:])
    if isinstance(pe, CNNTokenEmbed) and pe.keeps_before_stem:  # a frame (T, H, W): patch (1, H, W)
        kernel: tuple[int, ...] = (1, *spatial[1:])
    elif isinstance(pe, CNNTokenEmbed):  # a frequency band of the stem's stride, all frames: patch (s, T)
        s = pe.stem.stride[0]
        if spatial[0] % s:
            raise MaskingUnsupported(f"masked modelling: {spatial[0]} mel bins are not a multiple of the bands ({s})")
        kernel = (s, spatial[1])
    else:
        kernel = tuple(pe.kernel_size)
    if len(spatial) != len(kernel):
        raise ValueError(f"input {tuple(input_shape)} does not match patches {kernel}")
    return tuple(s // k for s, k in zip(spatial, kernel, strict=True)), kernel


def unpatchify(patches: Tensor, grid: tuple[int, ...], patch: tuple[int, ...], channels: int) -> Tensor:
    """Inverse of :func:`patch_targets`: (B, N, P) patches on ``grid`` -> (B, C, g1·k1, g2·k2, ...)."""
    B = patches.shape[0]
    if tuple(patches.shape[1:]) != (math.prod(grid), math.prod(patch) * channels):
        raise ValueError(f"patches {tuple(patches.shape)} do not fit grid {grid}, patch {patch}, {channels} channels")
    n = len(grid)
    x = patches.reshape(B, *grid, *patch, channels)  # (B, g1.., k1.., C)
    perm = [0, 2 * n + 1] + [d for i in range(n) for d in (1 + i, 1 + n + i)]
    return x.permute(perm).reshape(B, channels, *(g * k for g, k in zip(grid, patch, strict=True)))


# ---- loss ---------------------------------------------------------------------------------------------------------
def normalize_patches(target: Tensor, eps: float = 1e-6) -> Tensor:
    """Each patch (last axis) standardised to mean 0, variance 1 (MAE ``norm_pix_loss``: unbiased variance)."""
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    return (target - mean) / (var + eps).sqrt()


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over the ``mask`` positions (all when None) of the per-token mean squared error; (B, N, P) inputs.

    A ``mask`` with no True entry gives an attached zero.
    """
    per_token = (pred.float() - target.float()).pow(2).mean(dim=-1)  # (B, N)
    if mask is None:
        return per_token.mean()
    m = mask.to(per_token.dtype)
    return (per_token * m).sum() / m.sum().clamp(min=1.0)


def reconstruction_loss(
    pred: Tensor, target: Tensor, mask: Tensor, *, norm_pix: bool = False, masked_only: bool = True
) -> Tensor:
    """MAE reconstruction loss.

    Args:
        pred: (B, N, P) decoder output for every token of the grid.
        target: (B, N, P) patches (:func:`patch_targets`); no gradient flows into them.
        mask: (B, N) bool, True = masked (:attr:`TokenMask.mask`).
        norm_pix: standardise each target patch first (:func:`normalize_patches`).
        masked_only: average over the masked patches only (MAE); False: over every patch.

    Returns:
        0-d loss.
    """
    if pred.shape != target.shape or mask.shape != pred.shape[:2]:
        raise ValueError(f"pred {tuple(pred.shape)}, target {tuple(target.shape)}, mask {tuple(mask.shape)} differ")
    target = target.detach()
    if norm_pix:
        target = normalize_patches(target.float())
    return masked_mse(pred, target, mask if masked_only else None)


# ---- decoder ------------------------------------------------------------------------------------------------------
def sincos_grid(grid: tuple[int, ...], dim: int, device: torch.device | None = None) -> Tensor:
    """Fixed sin-cos positions of a token grid: (1, prod(grid), dim), rows in row-major grid order.

    Each axis gets an even share of ``dim`` (the first axis also the remainder; ``dim >= 2 · len(grid)``), filled
    with ``[sin(c · ω_k), cos(c · ω_k)]`` of the axis coordinate ``c``, ``ω_k = 10000^(-k / (d/2))`` (MAE / the
    Transformer's table, per axis).
    """
    n = len(grid)
    if dim < 2 * n:
        raise ValueError(f"sin-cos positions need dim >= {2 * n} for a {n}-axis grid, got {dim}")
    share = (dim // n) // 2 * 2
    widths = [dim - share * (n - 1)] + [share] * (n - 1)
    coords = torch.meshgrid(*(torch.arange(g, dtype=torch.float64) for g in grid), indexing="ij")
    parts = []
    for c, w in zip(coords, widths, strict=True):
        half = w // 2
        omega = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float64) / max(half, 1))
        ang = c.reshape(-1, 1) * omega  # (N, half)
        part = torch.cat([ang.sin(), ang.cos()], dim=1)
        if w % 2:  # an odd remainder: one zero column
            part = torch.cat([part, torch.zeros(part.shape[0], 1, dtype=part.dtype)], dim=1)
        parts.append(part)
    return torch.cat(parts, dim=1).float().unsqueeze(0).to(device)


@dataclass(frozen=True)
class DecoderConfig:
    """A light MAE decoder (MAE: 8 × 512; CAV-MAE: 8 × 512 shared; tiny defaults here for CPU)."""

    embed_dim: int = 128
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        if self.embed_dim < 2 or self.depth < 0 or self.num_heads < 1 or self.embed_dim % self.num_heads:
            raise ValueError(f"decoder: need embed_dim >= 2 divisible by num_heads >= 1 and depth >= 0, got {self}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"decoder: mlp_ratio must be > 0, got {self.mlp_ratio}")


class MaskedDecoder(nn.Module):
    """MAE-style decoder of one modality: visible tokens in, a prediction for every token of the grid out.

    Args:
        in_dim: width of the encoder tokens it reads.
        out_dim: width of each prediction (``P`` patch values, or a teacher's feature width).
        cfg: decoder size.

    ``forward(tokens, keep, grid)``: ``tokens`` (B, N_keep, in_dim) the encoder outputs of the visible tokens in
    the order of ``keep`` (B, N_keep) (their grid indices), ``grid`` the full token grid -> (B, N, out_dim),
    ``N = prod(grid)``. Masked positions hold the learned mask token (never anything of a masked patch) plus fixed
    sin-cos positions; the decoder attends over the whole grid.
    """

    def __init__(self, in_dim: int, out_dim: int, cfg: DecoderConfig = DecoderConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.embed_dim
        self.embed = nn.Linear(in_dim, D)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, D))
        self.blocks = nn.ModuleList(Block(D, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(D, eps=1e-6)
        self.pred = nn.Linear(D, out_dim)
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier-uniform linear weights, zero biases (MAE), mask token normal(0.02)."""
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.LayerNorm):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
            nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, tokens: Tensor, keep: Tensor, grid: tuple[int, ...]) -> Tensor:
        B, K, _ = tokens.shape
        N = math.prod(grid)
        if keep.shape != (B, K):
            raise ValueError(f"keep {tuple(keep.shape)} does not match tokens {tuple(tokens.shape)}")
        x = self.embed(tokens)  # (B, K, D)
        D = x.shape[-1]
        full = self.mask_token.to(x.dtype).expand(B, N, D)
        full = full.scatter(1, keep[:, :, None].expand(-1, -1, D), x)  # (B, N, D): visible tokens at their places
        full = full + sincos_grid(tuple(grid), D, x.device).to(x.dtype)
        for blk in self.blocks:
            full = blk(full)
        return self.pred(self.norm(full))  # (B, N, out_dim)
