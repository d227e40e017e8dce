"""PHGMM (Saire & Ramirez Rivera, paper 004): ``phgmm_r101``, ``phgmm_r50``, ``phgmm_r18``.

Citations ``P:n`` are lines of ``004_533486a5ce90015b.txt``; the readings follow
``shared/specs/semeda_phgmm.md`` part B1. C = ``num_classes``, K = ``num_components``,
D = ``latent_dim``, D_z = ``z_map_channels``, M = ``g_map_channels``, C_d = ``decoder_width``.

Architecture (input ``(B, in_chans, H, W)``, any size >= 32 px a side):

* **Encoder** ``backbone``: plain ResNet trunk, output stride 32, no dilation by default (P:133, P:205; Bottleneck
  for r101/r50, BasicBlock for r18) giving X'_1..X'_4 at strides 4, 8, 16, 32 (Alg. 1, P:185).
* **Local latent z** ``local_head`` (P:137-139, P:205): per level conv3x3(ch_l -> C) + sigmoid, global
  average pooling, concat -> ``(B, 4C)``; FC(4C -> D) + ReLU (the "1x256 concatenation vector",
  P:139, so its width is ``latent_dim``); separate FC heads per component k: mu^k, logvar^k in R^D
  and a logit a^k; pi = softmax(a). The decoder input is u_k = pi^k * mu^k (``decoder_input=
  "weighted"``, P:139) or mu^k (``"mean"``, P:125). Per component FC(D -> D_z) + ReLU, tiled to
  H/32 x W/32, concatenated (K * D_z) -> conv3x3 + ReLU -> 512 channels (P:139). No sampling (P:125).
* **Global latent g** ``global_head`` (``use_global``; P:141): the same front end with its own weights,
  two parallel FC(4C -> D) heads mu_g, logvar_g; mu_g -> FC(D -> M) + ReLU, tiled to H/32 x W/32.
* **Decoder** ``decoder`` (P:143, P:207): conv1x1 512 -> C_d (default 3C); four groups of 3, 23, 4, 3
  basic residual units at strides 32, 16, 8, 4; x2 upsampling between groups (bilinear, P:207, or a
  4x4 stride-2 transposed conv, Fig. 5); at the start of group g (after upsampling) the encoder level
  X'_{5-g} -> conv3x3 + ReLU -> C_d is added.
* **Merge** ``head`` (P:143, Alg. 1 P:192): each group output -> conv3x3 + ReLU -> bilinear to H/4; the
  g map -> conv3x3 + ReLU -> bilinear to H/4; concat (4 C_d + M; or a sum, ``merge="add"``) ->
  conv3x3(-> C_d) + ReLU ->
  ``head.classifier`` = ConvTranspose2d(C_d -> C, kernel 8, stride 4, padding 2): logits at stride 1.
* **PostNet** ``postnet`` (training only, P:161, P:205, P:349): its own trunk on
  concat(image, one-hot labels) (``in_chans + C`` channels, void pixels all zero) and the same
  K-component head; gives p(z|x, y). It runs only when ``self.training and targets is not None``.

Sizes that are not multiples of 32 work: upsampled maps are resized to their skip's size and the
logits to the input size. ``pretrained_prefix = "backbone."`` (torchvision names), Kaiming init
("from scratch" is the paper's protocol, P:264; ImageNet weights are the platform's ``pretrained``).

Switches (factory keywords; each ambiguity of the paper, spec B1 "[proposal]", default first):

* ``num_components`` K (12 = C in the paper, P:342); ``use_global`` (True; the no-g ablation, P:342);
* ``decoder_input``: ``"weighted"`` u_k = pi^k mu^k (P:139) | ``"mean"`` mu^k (P:125);
* ``latent_dim`` D (256, P:139, also the width of the FC after the summary);
* ``z_map_channels`` D_z (64, unstated) and ``component_fc``: ``"separate"`` per-k FC | ``"shared"``;
* ``g_map_channels`` M (64, unstated);
* ``decoder_width`` C_d (None -> 3C, P:143; P:207 says C);
* ``upsample`` between decoder groups: ``"bilinear"`` (P:207) | ``"deconv"`` (Fig. 5);
* ``merge``: ``"concat"`` (P:143, Alg. 1) | ``"add"`` (P:207);
* ``postnet_backbone``: ``"same"`` trunk as the encoder ("same configuration", P:205) | a lighter
  ``"resnet18"`` / ``"resnet34"`` (or ``"resnet50"`` / ``"resnet101"``);
* ``backbone_output_stride``: 32 (torchvision ResNet, no dilation) | 16 / 8 (dilated layer4 / layer3+4,
  the "atrous convolution" of P:205; Bottleneck encoders only). With dilation the decoder groups run
  at the skips' strides (e.g. 8, 8, 8, 4) and skip the x2 upsampling where the stride does not change.
  PostNet's trunk always runs at stride 32 (it only feeds pooled summaries).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglab.errors import check, is_int
from seglab.models import register_model
from seglab.models.backbones.hrnet import init_hrnet_weights
from seglab.models.backbones.resnet import RESNET_BASIC_LAYERS, RESNET_TRUNKS, BasicBlock, ResNetBackbone
from seglab.models.hrnet import check_common_args
from seglab.models.outputs import SegOutput

LEVELS = ("layer1", "layer2", "layer3", "layer4")
Z_MAP_DEPTH = 512  # depth of the decoder's input map (P:139)
DECODER_BLOCKS = (3, 23, 4, 3)  # residual units per decoder group, strides 32, 16, 8, 4 (P:143)
DECODER_INPUTS = ("weighted", "mean")
UPSAMPLES = ("bilinear", "deconv")
COMPONENT_FCS = ("separate", "shared")
MERGES = ("concat", "add")
BACKBONE_OUTPUT_STRIDES = (32, 16, 8)
POSTNET_BACKBONES = ("same", *RESNET_TRUNKS)

Mixture = Tuple[Tensor, Tensor, Tensor]  # pi (B, K), mu (B, K, D), logvar (B, K, D)


def _conv_relu(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    """Conv (with bias, "same" padding) + ReLU, the paper's "convolution + non-linearity"."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.ReLU(inplace=True))


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of ``(B, C, h, w)`` to ``size`` (``align_corners=False``); no-op if equal."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _tile(vectors: Tensor, size: Sequence[int]) -> Tensor:
    """``(B, N)`` -> ``(B, N, h, w)``: each vector copied to every position (the "upscale" of P:139)."""
    return vectors[:, :, None, None].expand(-1, -1, *size)


def one_hot_labels(targets: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(B, H, W)`` label ids -> ``(B, C, H, W)`` one-hot; ids outside ``[0, C)`` (void) are all zero."""
    valid = (targets >= 0) & (targets < num_classes)
    safe = torch.where(valid, targets, torch.zeros_like(targets)).long()
    one_hot = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).to(dtype)
    return one_hot * valid.unsqueeze(1).to(dtype)


# ------------------------------------------------------------------------------------ latent heads
class LevelSummary(nn.Module):
    """The front end of z, g and PostNet (P:139, P:141, P:205): per level conv3x3(ch_l -> C) + sigmoid,
    global average pooling, concatenation. ``forward([X'_1..X'_4]) -> (B, 4C)``."""

    def __init__(self, level_channels: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(ch, num_classes, 3, padding=1) for ch in level_channels)
        self.out_features = num_classes * len(level_channels)

    def forward(self, levels: Sequence[Tensor]) -> Tensor:
        pooled = [torch.sigmoid(conv(x)).mean(dim=(2, 3)) for conv, x in zip(self.convs, levels)]
        return torch.cat(pooled, dim=1)


class PerComponentLinear(nn.Module):
    """K independent fully connected layers: ``(B, K, in) -> (B, K, out)``, component k uses its own
    weight ``(out, in)`` and bias (nn.Linear's default init per component)."""

    def __init__(self, num_components: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(num_components, out_features, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_components, out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("bki,koi->bko", x, self.weight) + self.bias


class MixtureHead(nn.Module):
    """Parameters of a K-component diagonal GMM over R^D from the four encoder levels (Fig. 3, P:139,
    P:205): summary (B, 4C) -> FC + ReLU (B, D) -> per-component heads.

    ``forward(levels) -> (pi (B, K), mu (B, K, D), logvar (B, K, D))``; pi = softmax of K logits.
    The K heads of one kind are stored as one ``nn.Linear(D, K * D)`` (row block k = head k), which
    is the same as K separate FC layers.
    """

    def __init__(self, level_channels: Sequence[int], num_classes: int, num_components: int, latent_dim: int) -> None:
        super().__init__()
        self.num_components, self.latent_dim = num_components, latent_dim
        self.summary = LevelSummary(level_channels, num_classes)
        self.hidden = nn.Sequential(nn.Linear(self.summary.out_features, latent_dim), nn.ReLU(inplace=True))
        self.mu = nn.Linear(latent_dim, num_components * latent_dim)
        self.logvar = nn.Linear(latent_dim, num_components * latent_dim)
        self.logits = nn.Linear(latent_dim, num_components)

    def forward(self, levels: Sequence[Tensor]) -> Mixture:
        h = self.hidden(self.summary(levels))
        shape = (h.shape[0], self.num_components, self.latent_dim)
        return torch.softmax(self.logits(h), dim=1), self.mu(h).view(shape), self.logvar(h).view(shape)


class GaussianHead(nn.Module):
    """q(g|x) = N(mu_g, diag exp(logvar_g)) (eq. 2, Fig. 4, P:141): summary (B, 4C) -> two parallel
    FC heads. ``forward(levels) -> (mu_g (B, D), logvar_g (B, D))``."""

    def __init__(self, level_channels: Sequence[int], num_classes: int, latent_dim: int) -> None:
        super().__init__()
        self.summary = LevelSummary(level_channels, num_classes)
        self.mu = nn.Linear(self.summary.out_features, latent_dim)
        self.logvar = nn.Linear(self.summary.out_features, latent_dim)

    def forward(self, levels: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
        s = self.summary(levels)
        return self.mu(s), self.logvar(s)


class LocalMap(nn.Module):
    """z to the decoder's input (P:139): ``(B, K, D)`` -> FC(D -> D_z) + ReLU per component (own
    weights per k with ``component_fc="separate"``, one shared FC with ``"shared"``) -> tile to
    ``size`` -> concat ``(B, K * D_z, h, w)`` -> conv3x3 + ReLU -> ``(B, 512, h, w)``."""

    def __init__(self, num_components: int, latent_dim: int, map_channels: int, component_fc: str = "separate") -> None:
        super().__init__()
        self.fc: nn.Module = (PerComponentLinear(num_components, latent_dim, map_channels)
                              if component_fc == "separate" else nn.Linear(latent_dim, map_channels))
        self.conv = _conv_relu(num_components * map_channels, Z_MAP_DEPTH)

    def forward(self, u: Tensor, size: Sequence[int]) -> Tensor:
        vectors = F.relu(self.fc(u)).flatten(1)
        return self.conv(_tile(vectors, size))


class PostNet(nn.Module):
    """p_gamma(z|x, y) (eq. 5, P:161, P:205): its own ResNet trunk on concat(image, one-hot y) and a
    :class:`MixtureHead`. Used in training only (P:349); ``forward(images, targets) -> (pi, mu, logvar)``."""

    def __init__(self, trunk: str, in_chans: int, num_classes: int, num_components: int, latent_dim: int,
                 bn_momentum: float) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone: ResNetBackbone = RESNET_TRUNKS[trunk](32, in_chans + num_classes, bn_momentum)
        channels = [self.backbone.out_channels[k] for k in LEVELS]
        self.head = MixtureHead(channels, num_classes, num_components, latent_dim)

    def forward(self, images: Tensor, targets: Tensor) -> Mixture:
        if targets.dim() != 3 or targets.shape[0] != images.shape[0] or targets.shape[-2:] != images.shape[-2:]:
            raise ValueError(f"PHGMM PostNet needs (B, H, W) targets matching images {tuple(images.shape)}; "
                             f"got {tuple(targets.shape)}")
        labels = one_hot_labels(targets, self.num_classes, images.dtype)
        feats = self.backbone(torch.cat([images, labels], dim=1))
        return self.head([feats[k] for k in LEVELS])


# ---------------------------------------------------------------------------------- decoder / head
class DecoderGroup(nn.Module):
    """One decoder group: ``x (+ skip projection) -> units`` basic residual units of width C_d."""

    def __init__(self, skip_channels: int, width: int, units: int, bn_momentum: float) -> None:
        super().__init__()
        self.skip = _conv_relu(skip_channels, width)
        self.units = nn.Sequential(*(BasicBlock(width, width, bn_momentum=bn_momentum) for _ in range(units)))

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.units(x + self.skip(skip))


class PHGMMDecoder(nn.Module):
    """The decoder of Fig. 5 (P:143, P:207): ``forward(z_map (B, 512, h32, w32), skips [X'_4..X'_1])``
    -> the four group outputs ``(B, C_d, .)`` at the skips' strides (32, 16, 8, 4 without dilation).

    Between groups the map is upsampled x2 (bilinear, or a 4x4 stride-2 transposed conv with
    ``upsample="deconv"``) where the skip's stride halves, then resized to the skip's size if the
    input side is not a multiple of 32.
    """

    def __init__(self, skip_channels: Sequence[int], skip_strides: Sequence[int], width: int, upsample: str,
                 bn_momentum: float, blocks: Sequence[int] = DECODER_BLOCKS) -> None:
        super().__init__()
        self.project = nn.Conv2d(Z_MAP_DEPTH, width, 1)
        self.groups = nn.ModuleList(DecoderGroup(ch, width, n, bn_momentum) for ch, n in zip(skip_channels, blocks))
        halves = [deep > shallow for deep, shallow in zip(skip_strides, skip_strides[1:])]
        self.up = nn.ModuleList(nn.ConvTranspose2d(width, width, 4, stride=2, padding=1)
                                if upsample == "deconv" and half else nn.Identity() for half in halves)

    def _upsample(self, x: Tensor, index: int, size: Sequence[int]) -> Tensor:
        return _resize(self.up[index](x), size)

    def forward(self, z_map: Tensor, skips: Sequence[Tensor]) -> List[Tensor]:
        x = self.project(z_map)
        outputs: List[Tensor] = []
        for index, (group, skip) in enumerate(zip(self.groups, skips)):
            if index > 0:
                x = self._upsample(x, index - 1, skip.shape[-2:])
            x = group(x, skip)
            outputs.append(x)
        return outputs


class PHGMMHead(nn.Module):
    """Merge and classifier (P:143, P:207, Alg. 1 P:192): every group output and the g map ->
    conv3x3 + ReLU -> bilinear to stride 4 -> merged -> conv3x3(-> C_d) + ReLU -> ``classifier``
    (ConvTranspose2d kernel 8, stride 4, padding 2: exactly x4). ``forward -> (B, C, 4 h4, 4 w4)``.

    ``merge="concat"`` (P:143, Alg. 1): concatenation, 4 C_d + M channels (the g conv keeps M);
    ``"add"`` (P:207): the g conv maps M -> C_d and the five maps are summed.
    """

    def __init__(self, width: int, num_groups: int, g_channels: int, num_classes: int, merge: str = "concat") -> None:
        super().__init__()
        self.merge = merge
        self.levels = nn.ModuleList(_conv_relu(width, width) for _ in range(num_groups))
        g_out = g_channels if merge == "concat" else width
        self.g_conv = _conv_relu(g_channels, g_out) if g_channels else None
        fused = num_groups * width + (g_out if g_channels else 0) if merge == "concat" else width
        self.fuse = _conv_relu(fused, width)
        self.classifier = nn.ConvTranspose2d(width, num_classes, 8, stride=4, padding=2)

    def forward(self, groups: Sequence[Tensor], g_map: Optional[Tensor]) -> Tensor:
        size = groups[-1].shape[-2:]
        maps = [_resize(conv(x), size) for conv, x in zip(self.levels, groups)]
        if self.g_conv is not None and g_map is not None:
            maps.append(_resize(self.g_conv(g_map), size))
        merged = torch.cat(maps, dim=1) if self.merge == "concat" else torch.stack(maps).sum(dim=0)
        return self.classifier(self.fuse(merged))


# ------------------------------------------------------------------------------------------- model
class PHGMM(nn.Module):
    """PHGMM with a ResNet encoder (see the module docstring for the layout and switches).

    ``forward(images (B, in_chans, H, W), targets (B, H, W) or None) -> SegOutput`` with ``logits``
    ``(B, C, H, W)`` (``output_stride`` 1) and ``latents``: ``pi`` (B, K), ``mu`` / ``logvar``
    (B, K, D); with ``use_global`` ``g_mu`` / ``g_logvar`` (B, D); when PostNet ran (training mode
    with targets) ``post_pi`` (B, K), ``post_mu`` / ``post_logvar`` (B, K, D).
    """

    pretrained_prefix = "backbone."
    output_stride = 1

    def __init__(self, arch: str, num_classes: int, num_components: int = 12, use_global: bool = True,
                 decoder_input: str = "weighted", latent_dim: int = 256, decoder_width: Optional[int] = None,
                 z_map_channels: int = 64, g_map_channels: int = 64, postnet_backbone: str = "same",
                 upsample: str = "bilinear", component_fc: str = "separate", merge: str = "concat",
                 backbone_output_stride: int = 32, in_chans: int = 3, bn_momentum: float = 0.1) -> None:
        check_phgmm_args(arch, num_classes=num_classes, num_components=num_components, use_global=use_global,
                         decoder_input=decoder_input, latent_dim=latent_dim, decoder_width=decoder_width,
                         z_map_channels=z_map_channels, g_map_channels=g_map_channels,
                         postnet_backbone=postnet_backbone, upsample=upsample, component_fc=component_fc,
                         merge=merge, backbone_output_stride=backbone_output_stride, in_chans=in_chans,
                         bn_momentum=bn_momentum)
        super().__init__()
        self.num_classes, self.num_components, self.latent_dim = num_classes, num_components, latent_dim
        self.use_global, self.decoder_input = use_global, decoder_input
        self.decoder_width = decoder_width or 3 * num_classes
        self.backbone_output_stride = backbone_output_stride
        self.backbone: ResNetBackbone = RESNET_TRUNKS[arch](backbone_output_stride, in_chans, bn_momentum)
        channels = [self.backbone.out_channels[k] for k in LEVELS]
        strides = [self.backbone.strides[k] for k in LEVELS]
        self.local_head = MixtureHead(channels, num_classes, num_components, latent_dim)
        self.local_map = LocalMap(num_components, latent_dim, z_map_channels, component_fc)
        if use_global:
            self.global_head = GaussianHead(channels, num_classes, latent_dim)
            self.global_map = nn.Sequential(nn.Linear(latent_dim, g_map_channels), nn.ReLU(inplace=True))
        self.decoder = PHGMMDecoder(channels[::-1], strides[::-1], self.decoder_width, upsample, bn_momentum)
        self.head = PHGMMHead(self.decoder_width, len(DECODER_BLOCKS), g_map_channels if use_global else 0,
                              num_classes, merge)
        trunk = arch if postnet_backbone == "same" else postnet_backbone
        self.postnet = PostNet(trunk, in_chans, num_classes, num_components, latent_dim, bn_momentum)
        init_hrnet_weights(self, "kaiming")

    def training_only_modules(self) -> List[nn.Module]:
        """Modules that never run at inference (PostNet); see ``count_inference_parameters``."""
        return [self.postnet]

    def posterior(self, images: Tensor, targets: Tensor) -> Mixture:
        """PostNet's p(z|x, y): ``(pi (B, K), mu (B, K, D), logvar (B, K, D))``, in any mode (e.g. under
        ``no_grad`` in eval mode for a probe that shuffles labels across the batch, spec B7.2)."""
        return self.postnet(images, targets)

    def _decoder_input(self, pi: Tensor, mu: Tensor) -> Tensor:
        """u_k = pi^k mu^k (P:139) or mu^k (P:125): ``(B, K, D)``."""
        return pi.unsqueeze(-1) * mu if self.decoder_input == "weighted" else mu

    def forward(self, images: Tensor, targets: Optional[Tensor] = None) -> SegOutput:
        feats = self.backbone(images)
        levels = [feats[k] for k in LEVELS]
        deep_size = levels[-1].shape[-2:]
        pi, mu, logvar = self.local_head(levels)
        latents: Dict[str, Tensor] = {"pi": pi, "mu": mu, "logvar": logvar}
        groups = self.decoder(self.local_map(self._decoder_input(pi, mu), deep_size), levels[::-1])
        g_map = None
        if self.use_global:
            g_mu, g_logvar = self.global_head(levels)
            latents.update(g_mu=g_mu, g_logvar=g_logvar)
            g_map = _tile(self.global_map(g_mu), deep_size)  # only mu_g is used forward (P:141, P:207)
        logits = _resize(self.head(groups, g_map), images.shape[-2:])
        if self.training and targets is not None:
            post_pi, post_mu, post_logvar = self.postnet(images, targets)
            latents.update(post_pi=post_pi, post_mu=post_mu, post_logvar=post_logvar)
        return SegOutput(logits=logits, output_stride=self.output_stride, latents=latents)


def check_phgmm_args(arch: str, **kwargs: Any) -> None:
    """Validate the PHGMM keyword arguments; raises a one-line ConfigError naming ``model.<key>``."""
    a = kwargs  # the keyword arguments of PHGMM.__init__
    check_common_args(a["num_classes"], a["in_chans"], a["bn_momentum"], False)
    for key in ("num_components", "latent_dim", "z_map_channels", "g_map_channels"):
        check(is_int(a[key]) and a[key] >= 1, f"model.{key} must be an integer >= 1 (got {a[key]!r})")
    width = a["decoder_width"]
    check(width is None or (is_int(width) and width >= 1),
          f"model.decoder_width must be null (3 * num_classes) or an integer >= 1 (got {width!r})")
    check(isinstance(a["use_global"], bool), f"model.use_global must be true or false (got {a['use_global']!r})")
    for key, allowed in (("decoder_input", DECODER_INPUTS), ("upsample", UPSAMPLES), ("component_fc", COMPONENT_FCS),
                         ("merge", MERGES), ("postnet_backbone", POSTNET_BACKBONES)):
        check(isinstance(a[key], str) and a[key] in allowed,
              f"model.{key} must be one of {', '.join(allowed)} (got {a[key]!r})")
    stride = a["backbone_output_stride"]
    allowed_strides = (32,) if arch in RESNET_BASIC_LAYERS else BACKBONE_OUTPUT_STRIDES  # BasicBlock: no dilation
    allowed = str(allowed_strides[0]) if len(allowed_strides) == 1 else "one of " + ", ".join(map(str, allowed_strides))
    check(is_int(stride) and stride in allowed_strides,
          f"model.backbone_output_stride must be {allowed} for a {arch} encoder (got {stride!r})")


# ---------------------------------------------------------------------------------------- factories
def _phgmm_factory(name: str, arch: str) -> Callable[..., PHGMM]:
    def factory(num_classes: int, num_components: int = 12, use_global: bool = True, decoder_input: str = "weighted",
                latent_dim: int = 256, decoder_width: Optional[int] = None, z_map_channels: int = 64,
                g_map_channels: int = 64, postnet_backbone: str = "same", upsample: str = "bilinear",
                component_fc: str = "separate", merge: str = "concat", backbone_output_stride: int = 32,
                in_chans: int = 3, bn_momentum: float = 0.1) -> PHGMM:
        return PHGMM(arch, num_classes, num_components=num_components, use_global=use_global,
                     decoder_input=decoder_input, latent_dim=latent_dim, decoder_width=decoder_width,
                     z_map_channels=z_map_channels, g_map_channels=g_map_channels,
                     postnet_backbone=postnet_backbone, upsample=upsample, component_fc=component_fc,
                     merge=merge, backbone_output_stride=backbone_output_stride, in_chans=in_chans,
                     bn_momentum=bn_momentum)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = (f"PHGMM on a {arch} encoder (output stride 32), K-component local latent z, optional "
                       f"global latent g, training-only PostNet; logits at stride 1.")
    return factory


for _name, _arch in (("phgmm_r101", "resnet101"), ("phgmm_r50", "resnet50"), ("phgmm_r18", "resnet18")):
    register_model(_name)(_phgmm_factory(_name, _arch))
