"""Hand-crafted technical-quality features, computed inside the scoring graph.

They run on the same uint8 (N, 3, S, S) batch as the backbone, in fp32 torch ops
that ONNX exports (conv2d, pooling, reductions), so every backend (eager, bf16,
ONNX Runtime, CUDA) gets them at no extra transfer. What they measure:

- exposure: mean luminance, share of crushed blacks (< 6 %) and blown whites (> 94 %);
- contrast: RMS contrast (std of luminance);
- colour: Hasler & Suesstrunk's colourfulness (2003) and mean saturation;
- sharpness: log variance of the Laplacian and log mean gradient magnitude;
- structure: share of flat pixels (local std < 1 %; screenshots, text, textures,
  star fields are mostly flat) and mean log local contrast;
- level-ness: |gx*gy| / (gx^2+gy^2) averaged with gradient weight (0 when edges
  are horizontal/vertical as in a level interior shot, 0.5 at 45 degrees);
- natural scene statistics, BRISQUE-style (Mittal et al. 2012) at 2 scales: MSCN
  coefficients (Gaussian 7x7, sigma 7/6, C = 1/255 on [0,1] luminance); their
  variance, the generalised-Gaussian shape proxy E[x^2]/E[|x|]^2 and kurtosis;
  for the 4 neighbour products (H, V, D1, D2) the mean and the left and right
  variances of an asymmetric GGD. Moments replace BRISQUE's GGD fits (no
  iterative fit in the graph); the linear head on top learns what they mean.

``QualityFeatures`` standardises with fixed buffers (mean/std of the synthetic
training set) so the heads see features of unit scale.

Colour is measured but does not score: ``COLOUR_FEATURES`` (colourfulness,
saturation) are held at their training mean (0 after standardising) for the heads.
Most calibration photos are warm-toned, and a blend that learned "warm and
saturated = good" put clean, white modern rooms last (issue 22, measured by
bench/colour_bias.py); light, clipping, contrast and detail still score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_NAMES = [
    "brightness",
    "dark_clip",
    "bright_clip",
    "contrast",
    "colourfulness",
    "saturation",
    "log_laplacian_var",
    "log_gradient",
    "flat_share",
    "log_local_contrast",
    "tilt",
] + [
    f"s{s}_{n}"
    for s in (1, 2)
    for n in ["mscn_var", "mscn_rho", "mscn_log_kurt"]
    + [f"{d}_{m}" for d in ("h", "v", "d1", "d2") for m in ("mean", "log_lvar", "log_rvar")]
]
NUM_QUALITY_FEATURES = len(FEATURE_NAMES)  # 11 + 2 x 15 = 41
QUALITY_FEATURES_VERSION = 1  # bump when a feature changes: feature caches key on it
EPS = 1e-6
# Held at their mean for the heads (see the module docstring): no colour preference.
COLOUR_FEATURES = ("colourfulness", "saturation")
# Bump when what the heads see of the features changes without a weight changing (the
# exported-graph cache keys on it; 2 = COLOUR_FEATURES held at their mean).
HEAD_INPUTS_VERSION = 2


def _gaussian_kernel(size: int = 7, sigma: float = 7 / 6) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def _mean(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(1)


def _nss(y: torch.Tensor, window: torch.Tensor) -> list[torch.Tensor]:
    """BRISQUE-style statistics of one luminance scale (N,1,H,W) -> 15 features of shape (N,)."""
    mu = F.conv2d(F.pad(y, (3, 3, 3, 3), mode="replicate"), window)
    var = F.conv2d(F.pad(y * y, (3, 3, 3, 3), mode="replicate"), window) - mu * mu
    mscn = (y - mu) / (var.clamp_min(0).sqrt() + 1.0 / 255)
    m2 = _mean(mscn * mscn)
    feats = [m2, m2 / (_mean(mscn.abs()) ** 2 + EPS), torch.log(_mean(mscn**4) / (m2 * m2 + EPS) + EPS)]
    pairs = [
        mscn[..., :, :-1] * mscn[..., :, 1:],  # horizontal neighbour
        mscn[..., :-1, :] * mscn[..., 1:, :],  # vertical
        mscn[..., :-1, :-1] * mscn[..., 1:, 1:],  # main diagonal
        mscn[..., :-1, 1:] * mscn[..., 1:, :-1],  # anti-diagonal
    ]
    for p in pairs:
        neg, pos = (p < 0).float(), (p > 0).float()
        lvar = _mean(p * p * neg) / (_mean(neg) + EPS)
        rvar = _mean(p * p * pos) / (_mean(pos) + EPS)
        feats += [_mean(p), torch.log(lvar + EPS), torch.log(rvar + EPS)]
    return feats


class QualityFeatures(nn.Module):
    """uint8 (N,3,S,S) -> (N, 41) standardised features (raw ones from ``raw``)."""

    window: torch.Tensor
    laplacian: torch.Tensor
    sobel: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    keep: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", _gaussian_kernel(), persistent=False)
        lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
        self.register_buffer("laplacian", lap, persistent=False)
        self.register_buffer("sobel", torch.stack([sobel, sobel.T]).view(2, 1, 3, 3), persistent=False)
        # fixed standardisation, set from the synthetic training set by scripts/train_default_heads.py
        self.register_buffer("mean", torch.zeros(NUM_QUALITY_FEATURES))
        self.register_buffer("std", torch.ones(NUM_QUALITY_FEATURES))
        # 0 for COLOUR_FEATURES: a constant of the code, not of a checkpoint (not persistent)
        keep = torch.tensor([0.0 if n in COLOUR_FEATURES else 1.0 for n in FEATURE_NAMES])
        self.register_buffer("keep", keep, persistent=False)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        rgb = x.float() / 255.0
        r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
        y = 0.299 * r + 0.587 * g + 0.114 * b  # (N,1,H,W) luma in [0,1]
        # colourfulness, Hasler & Suesstrunk 2003 (on the 0..255 scale, /100 to keep it near 1)
        rg, yb = (r - g) * 255, (0.5 * (r + g) - b) * 255
        std_rg, std_yb = _mean(rg * rg) - _mean(rg) ** 2, _mean(yb * yb) - _mean(yb) ** 2
        colourful = (std_rg.clamp_min(0) + std_yb.clamp_min(0)).sqrt() + 0.3 * (_mean(rg) ** 2 + _mean(yb) ** 2).sqrt()
        mx, mn = rgb.amax(1, keepdim=True), rgb.amin(1, keepdim=True)
        sat = (mx - mn) / (mx + EPS)
        lap = F.conv2d(y, self.laplacian) * 255
        grad = F.conv2d(y, self.sobel) * 255  # (N,2,H-2,W-2)
        gx, gy = grad[:, 0:1], grad[:, 1:2]
        g2 = gx * gx + gy * gy
        tilt = _mean((gx * gy).abs()) / (_mean(g2) + EPS)
        mu = F.conv2d(F.pad(y, (3, 3, 3, 3), mode="replicate"), self.window)
        local_std = (F.conv2d(F.pad(y * y, (3, 3, 3, 3), mode="replicate"), self.window) - mu * mu).clamp_min(0).sqrt()
        feats = [
            _mean(y),
            _mean((y < 0.06).float()),
            _mean((y > 0.94).float()),
            (_mean(y * y) - _mean(y) ** 2).clamp_min(0).sqrt(),
            colourful / 100,
            _mean(sat),
            torch.log1p(_mean(lap * lap) - _mean(lap) ** 2),
            torch.log1p(_mean(g2.sqrt())),
            _mean((local_std < 0.01).float()),
            _mean(torch.log(local_std + 1.0 / 255)),
            tilt,
        ]
        feats += _nss(y, self.window)
        feats += _nss(F.avg_pool2d(y, 2), self.window)  # second scale, as BRISQUE's half-size pass
        return torch.stack(feats, dim=1)

    def standardise(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw - self.mean) / self.std * self.keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.standardise(self.raw(x))


def bins_tilt(num_bins: int = 10) -> torch.Tensor:
    """Centred bin positions (-4.5..4.5): adding t * this to logits shifts the mean score up for t > 0."""
    return torch.arange(num_bins, dtype=torch.float32) - (num_bins - 1) / 2
