"""The HSTL CASIA-B network in PyTorch, for training.

Module names, parameter names and shapes are those of the published checkpoints
so that `state_dict()` saves exactly the layout `hstl export` reads and a
published checkpoint loads here with `strict=True`.
"""

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

# The silhouette every variant reads: OpenGait-normalised, 64 rows × 44 columns after the side cut.
FRAME_HEIGHT = 64
FRAME_WIDTH = 44


@dataclass(frozen=True)
class Variant:
    """One HSTL network shape. `downsample` is the side of the area average applied to the 64 × 44
    silhouette before the first convolution (1: none); the final GeM has one strip per remaining row."""

    name: str
    channels: tuple
    level2_bands: tuple
    level3_bands: tuple
    downsample: int

    @property
    def height(self):
        return FRAME_HEIGHT // self.downsample

    @property
    def width(self):
        return FRAME_WIDTH // self.downsample

    @property
    def parts(self):
        return 1 + 2 * len(self.level2_bands) + len(self.level3_bands) + self.height

    @property
    def embedding_channels(self):
        return self.channels[-1]


# The published CASIA-B network (Wang et al., ICCV 2023).
CASIA_B = Variant("casia-b", (32, 64, 128), (40, 24), (8, 32, 16, 8), downsample=1)
# The edge network (model/COMPACT.md): half the channels on a 2 × 2 area average of the same
# silhouette, every band and strip halved with the height.
COMPACT = Variant("compact", (16, 32, 64), (20, 12), (4, 16, 8, 4), downsample=2)
VARIANTS = {v.name: v for v in (CASIA_B, COMPACT)}

CLASSES = 74
PARTS = CASIA_B.parts

GEM_P_INIT = 6.5
GEM_EPS = 1e-6
LEAKY_SLOPE = 0.01


class BasicConv3d(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv3d = nn.Conv3d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, x):
        return self.conv3d(x)


class BandedConv3d(nn.Module):
    """ARME_Conv: one convolution per horizontal band, each padded at its own edges."""

    def __init__(self, c_in, c_out, bands):
        super().__init__()
        self.bands = list(bands)
        self.conv3d = nn.ModuleList(BasicConv3d(c_in, c_out) for _ in self.bands)

    def forward(self, x):
        parts = torch.split(x, self.bands, dim=3)
        y = torch.cat([conv(part) for conv, part in zip(self.conv3d, parts)], dim=3)
        return F.leaky_relu(y, LEAKY_SLOPE)


class GeM(nn.Module):
    """Generalised-mean pooling over every cell of a band, with a learnt exponent."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.full((1,), GEM_P_INIT))

    def forward(self, x):
        pooled = x.clamp(min=GEM_EPS).pow(self.p).mean(dim=(-2, -1))
        return pooled.pow(1.0 / self.p).unsqueeze(-1)


class StripGeM(nn.Module):
    """GeMHPP with one strip per row: one shared exponent, a mean over the width of each row."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.full((1,), GEM_P_INIT))

    def forward(self, x):
        return x.clamp(min=GEM_EPS).pow(self.p).mean(dim=-1).pow(1.0 / self.p)


class PointwiseProjection(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=1, bias=False)

    def forward(self, x):
        return self.conv(x)


class ASTP(nn.Module):
    """Temporal max, optional channel projection, then one GeM per band: [N, C_out, bands]."""

    def __init__(self, bands, c_in, c_out, project):
        super().__init__()
        self.bands = list(bands)
        self.hpp = nn.ModuleList(GeM() for _ in self.bands)
        if project:
            self.proj = PointwiseProjection(c_in, c_out)
        else:
            self.proj = None

    def forward(self, x):
        x = x.max(dim=2).values
        if self.proj is not None:
            x = self.proj(x)
        parts = torch.split(x, self.bands, dim=2)
        return torch.cat([gem(part) for gem, part in zip(self.hpp, parts)], dim=-1)


class FTA(nn.Module):
    """Frame-level temporal aggregation: two stride-3 max pools mixed by per-channel softmax weights."""

    def __init__(self, channels):
        super().__init__()
        self.fcs = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size=1, bias=True) for _ in range(2))

    def forward(self, x):
        short = F.max_pool3d(x, kernel_size=(3, 1, 1), stride=(3, 1, 1))
        long = F.max_pool3d(x, kernel_size=(5, 1, 1), stride=(3, 1, 1), padding=(1, 0, 0))
        summary = (short + long).mean(dim=(3, 4))
        logits = torch.stack([self.fcs[0](summary), self.fcs[1](summary)], dim=0)
        weights = torch.softmax(logits, dim=0)[..., None, None]
        return weights[0] * short + weights[1] * long


class FTABlock(nn.Module):
    def __init__(self, channels, bands):
        super().__init__()
        self.bands = list(bands)
        self.mma = nn.ModuleList(FTA(channels) for _ in self.bands)

    def forward(self, x):
        parts = torch.split(x, self.bands, dim=3)
        return torch.cat([fta(part) for fta, part in zip(self.mma, parts)], dim=3)


class SeparateFCs(nn.Module):
    """One linear map per part, weights stored [parts, in, out]."""

    def __init__(self, parts, c_in, c_out):
        super().__init__()
        self.fc_bin = nn.Parameter(nn.init.xavier_uniform_(torch.zeros(parts, c_in, c_out)))

    def forward(self, x):
        per_part = x.permute(2, 0, 1)
        return per_part.matmul(self.fc_bin).permute(1, 2, 0)


class HSTL(nn.Module):
    """Input [N, T, 64, 44] in [0, 1], whatever the variant. Output: the embedding [N, parts, C]
    (the BatchNorm output), the pre-BatchNorm head output [N, parts, C] and the training logits
    [N, parts, classes]."""

    def __init__(self, classes=CLASSES, variant=CASIA_B):
        super().__init__()
        self.variant = variant
        c1, c2, c3 = variant.channels
        level2, level3 = list(variant.level2_bands), list(variant.level3_bands)
        self.arme1 = nn.Sequential(BasicConv3d(1, c1), nn.LeakyReLU(LEAKY_SLOPE))
        self.astp1 = ASTP([variant.height], c1, c3, project=True)
        self.arme2 = nn.Sequential(BandedConv3d(c1, c1, level2), BandedConv3d(c1, c2, level2))
        self.astp2 = ASTP(level2, c2, c3, project=True)
        self.fta = FTABlock(c2, level2)
        self.astp2_fta = ASTP(level2, c2, c3, project=True)
        self.arme3 = nn.Sequential(BandedConv3d(c2, c3, level3), BandedConv3d(c3, c3, level3))
        self.astp3 = ASTP(level3, c3, c3, project=False)
        self.HPP = StripGeM()
        self.Head0 = SeparateFCs(variant.parts, c3, c3)
        self.Bn = nn.BatchNorm1d(c3)
        self.Head1 = SeparateFCs(variant.parts, c3, classes)
        self._initialise()

    def _initialise(self):
        """OpenGait's initialisation: Xavier-uniform convolutions, BatchNorm weight N(1, 0.02)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv3d, nn.Conv2d, nn.Conv1d)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm1d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, sils):
        x = network_input(tile_short_clip(sils), self.variant).unsqueeze(1)
        level1 = self.arme1(x)
        level2 = self.arme2(level1)
        aggregated = self.fta(level2)
        level3 = self.arme3(aggregated)
        feat = torch.cat(
            [
                self.astp1(level1),
                self.astp2(level2),
                self.astp2_fta(aggregated),
                self.astp3(level3),
                self.HPP(level3.max(dim=2).values),
            ],
            dim=-1,
        )
        gait = self.Head0(feat)
        embedding = self.Bn(gait)
        logits = self.Head1(embedding)
        return embedding.permute(0, 2, 1), gait.permute(0, 2, 1), logits.permute(0, 2, 1)


def network_input(sils, variant):
    """The variant's view of the 64 × 44 silhouettes [N, T, 64, 44]: their area average over
    `downsample` × `downsample` cells."""
    if variant.downsample == 1:
        return sils
    return F.avg_pool2d(sils, variant.downsample)


def variant_of(state_dict):
    """The variant whose shapes a state dict has (the stem's channels and the head's part count)."""
    channels = state_dict["arme1.0.conv3d.weight"].shape[0]
    parts = state_dict["Head0.fc_bin"].shape[0]
    for variant in VARIANTS.values():
        if variant.channels[0] == channels and variant.parts == parts:
            return variant
    raise ValueError(f"no HSTL variant has {channels} stem channels and {parts} parts")


def tile_short_clip(sils):
    """The reference repeats 1-frame clips 3 times and 2-frame clips twice (whole-clip tiling)."""
    frames = sils.shape[1]
    if frames == 1:
        return sils.repeat(1, 3, 1, 1)
    if frames == 2:
        return sils.repeat(1, 2, 1, 1)
    return sils


def part_distance(a, b):
    """The reference distance: Euclidean per part, averaged over parts. a [M,P,C], b [N,P,C] -> [M,N]."""
    a = a.permute(1, 0, 2)
    b = b.permute(1, 0, 2)
    squared = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1).unsqueeze(1) - 2 * a.matmul(b.transpose(1, 2))
    return squared.clamp(min=0).sqrt().mean(dim=0)
