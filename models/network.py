"""GalleryNet: one backbone pass, three heads (aesthetic distribution, area, embedding).

Input is the uint8 (N, 3, S, S) batch from ``models.preprocess``; normalisation with
the backbone's mean/std happens here so every backend (eager, bf16, ONNX) sees the
same bytes. Heads sit on the global-average-pooled last conv features, as in NIMA
(GAP -> dropout 0.75 -> Dense(10, softmax)) and in idealo's tagger; keeping the
conv map reachable lets CAM (Zhou et al. 2016) weight it with the area head.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .backbones import DEFAULT_WEIGHTS, Backbone, create_backbone, get_backbone_spec
from .quality import NUM_QUALITY_FEATURES, QualityFeatures, bins_tilt
from .zeroshot import DEFAULT_AREAS, area_matrix, calibrated_prior

NUM_SCORE_BINS = 10  # AVA votes 1..10
NIMA_DROPOUT = 0.75  # idealo/NIMA head dropout
DEFAULT_EMBEDDING_DIM = 128
EMBEDDING_SEED = 20261128


def seeded_orthogonal(rows: int, cols: int, seed: int = EMBEDDING_SEED) -> torch.Tensor:
    """(rows, cols) matrix with orthonormal rows from numpy's PCG64 (stable across versions).

    A random orthogonal projection keeps cosine similarities of the pooled features
    approximately (Johnson-Lindenstrauss), which is all near-duplicate search needs.
    """
    g = np.random.default_rng(seed).standard_normal((cols, rows))
    q, r = np.linalg.qr(g)  # (cols, rows), orthonormal columns
    q *= np.sign(np.diag(r))  # make the decomposition unique
    return torch.from_numpy(np.ascontiguousarray(q.T)).float()


class LinearAreaHead(nn.Module):
    """Trained area tagger: Dense over pooled features (CAM weights = its rows)."""

    kind = "linear"

    def __init__(self, num_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_features, num_classes)

    def forward(self, pooled: torch.Tensor, backbone: Backbone) -> torch.Tensor:
        return self.fc(self.dropout(pooled))

    def cam_weights(self, pooled: torch.Tensor, backbone: Backbone) -> torch.Tensor:
        """(N, C, F) weights of each class over feature channels."""
        return self.fc.weight.unsqueeze(0).expand(pooled.shape[0], -1, -1)


class ZeroShotAreaHead(nn.Module):
    """Area prior from the backbone's ImageNet classifier: P(area) = sum of mapped P(class)."""

    kind = "zeroshot"
    class_to_area: torch.Tensor
    area_bias: torch.Tensor
    temperature: torch.Tensor

    def __init__(self, areas: list[str]):
        super().__init__()
        self.register_buffer("class_to_area", torch.from_numpy(area_matrix(areas)))
        # decision rule calibrated on labelled photos (scripts/calibrate_area_prior.py):
        # P(area) ~ (sum of mapped P(class))^(1/T) * exp(bias[area]); T = 1, bias = 0 is the raw prior
        bias, temperature = calibrated_prior(areas)
        self.register_buffer("area_bias", torch.from_numpy(bias))
        self.register_buffer("temperature", torch.tensor(temperature))

    def forward(self, pooled: torch.Tensor, backbone: Backbone) -> torch.Tensor:
        if backbone.imagenet_head is None:
            raise ValueError(f"{backbone.name} has no ImageNet head on pooled features; train an area head")
        p = backbone.imagenet_head(pooled).float().softmax(dim=1)
        # log of summed probabilities (softmax of these gives the sums back exactly), then the calibration
        return torch.log((p @ self.class_to_area).clamp_min(1e-12)) / self.temperature + self.area_bias

    def cam_weights(self, pooled: torch.Tensor, backbone: Backbone) -> torch.Tensor:
        """Probability-weighted mean of the mapped ImageNet classes' weights (linear heads only).

        d log P(area) / d pooled = sum_k p_k W_k / P(area) - E_p[W] over the area's
        classes; the common term shifts all areas alike, so the first term is the map.
        """
        head = backbone.imagenet_head
        if not isinstance(head, nn.Linear):
            raise ValueError(f"CAM with the zero-shot prior needs a linear ImageNet head; {backbone.name} has none")
        p = head(pooled).float().softmax(dim=1)  # (N, 1000)
        w = p.unsqueeze(2) * self.class_to_area.unsqueeze(0)  # (N, 1000, C)
        w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return torch.einsum("nkc,kf->ncf", w, head.weight.float())


class GalleryNet(nn.Module):
    input_scale: torch.Tensor  # buffers (register_buffer in __init__)
    input_shift: torch.Tensor
    tilt_bins: torch.Tensor

    def __init__(
        self,
        backbone: Backbone,
        areas: list[str],
        *,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        input_size: int = 224,
        area_head: str = "linear",
        embedding_dim: int = DEFAULT_EMBEDDING_DIM,
        head_dropout: float = NIMA_DROPOUT,
    ):
        super().__init__()
        self.backbone = backbone
        self.backbone_name = backbone.name
        self.areas = list(areas)
        self.mean, self.std, self.input_size = tuple(mean), tuple(std), input_size
        nf = backbone.num_features
        # uint8 -> (x/255 - mean)/std folded into one multiply-add
        std_t, mean_t = torch.tensor(std).view(1, 3, 1, 1), torch.tensor(mean).view(1, 3, 1, 1)
        self.register_buffer("input_scale", 1.0 / (255.0 * std_t), persistent=False)
        self.register_buffer("input_shift", mean_t / std_t, persistent=False)
        # NIMA's head (dropout -> Dense(10)) over the pooled features plus the hand-crafted quality
        # features (models/quality.py, computed in the graph); a zero-initialised blend then tilts the
        # distribution by a few calibrated quality features: logits + (w . q + b) * (bin - 5.5)
        self.quality_features = QualityFeatures()
        self.aesthetic_head = nn.Sequential(
            nn.Dropout(head_dropout), nn.Linear(nf + NUM_QUALITY_FEATURES, NUM_SCORE_BINS)
        )
        self.aesthetic_blend = nn.Linear(NUM_QUALITY_FEATURES, 1)
        nn.init.zeros_(self.aesthetic_blend.weight)
        nn.init.zeros_(self.aesthetic_blend.bias)
        self.register_buffer("tilt_bins", bins_tilt(NUM_SCORE_BINS), persistent=False)
        if area_head == "linear":
            self.area_head: LinearAreaHead | ZeroShotAreaHead = LinearAreaHead(
                nf, len(self.areas), dropout=head_dropout
            )
        elif area_head == "zeroshot":
            self.area_head = ZeroShotAreaHead(self.areas)
        else:
            raise ValueError(f"area_head must be 'linear' or 'zeroshot', not {area_head!r}")
        self.embedding = nn.Linear(nf, embedding_dim, bias=False)
        with torch.no_grad():
            self.embedding.weight.copy_(seeded_orthogonal(embedding_dim, nf))
        self.embedding.weight.requires_grad_(False)  # fixed projection unless training unfreezes it

    @property
    def area_head_kind(self) -> str:
        return self.area_head.kind

    @property
    def embedding_dim(self) -> int:
        return self.embedding.out_features

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.input_scale.dtype) * self.input_scale - self.input_shift

    def run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything training, evaluation and CAM need from one pass (logits, not probabilities)."""
        fmap = self.backbone.forward_features(self.normalise(x))
        # heads run in fp32 even under bf16/fp16 autocast: they cost nothing and a trained head
        # amplifies low-precision weights (bf16 heads moved the aesthetic mean by ~0.1)
        with torch.autocast(device_type=fmap.device.type, enabled=False):
            out = self.heads(fmap.float().mean(dim=(2, 3)), self.quality_features(x))
        out["feature_map"] = fmap
        return out

    def aesthetic_logits(self, pooled: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        logits = self.aesthetic_head(torch.cat([pooled, quality], dim=1))
        return logits + self.aesthetic_blend(quality) * self.tilt_bins

    def heads(self, pooled: torch.Tensor, quality: torch.Tensor) -> dict[str, torch.Tensor]:
        """All heads from pooled backbone features and standardised quality features (what the
        training feature cache stores, so phase 1 never runs the backbone twice)."""
        return {
            "pooled": pooled,
            "quality": quality,
            "aesthetic_logits": self.aesthetic_logits(pooled, quality),
            "area_logits": self.area_head(pooled, self.backbone),
            "embedding": F.normalize(self.embedding(pooled).float(), dim=1),
        }

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """uint8 (N,3,S,S) -> (aesthetic_dist (N,10), area_probs (N,C), embedding (N,D)), float32."""
        out = self.run(x)
        return (
            out["aesthetic_logits"].float().softmax(dim=1),
            out["area_logits"].float().softmax(dim=1),
            out["embedding"],
        )

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("backbone.")]

    def replace_area_head(self, areas: list[str], dropout: float = NIMA_DROPOUT) -> None:
        """Fresh linear tagger for ``areas`` (training a tagger starts here)."""
        self.areas = list(areas)
        self.area_head = LinearAreaHead(self.backbone.num_features, len(areas), dropout=dropout).to(
            self.input_scale.device
        )


def create_model(
    backbone: str = "efficientnet_lite0",
    areas: list[str] | None = None,
    *,
    weights: str | None = DEFAULT_WEIGHTS,
    area_head: str = "linear",
    embedding_dim: int = DEFAULT_EMBEDDING_DIM,
    head_dropout: float = NIMA_DROPOUT,
    seed: int = 0,
) -> GalleryNet:
    """timm-style factory. ``weights``: "default" (package weights), a local file, or None (random).

    Head initialisation is seeded so two calls give identical models.
    """
    spec = get_backbone_spec(backbone)
    net_backbone = create_backbone(backbone, weights)
    devnull = torch.random.fork_rng(devices=[])
    with devnull:
        torch.manual_seed(seed)
        model = GalleryNet(
            net_backbone,
            areas or DEFAULT_AREAS,
            mean=spec.mean,
            std=spec.std,
            input_size=spec.input_size,
            area_head=area_head,
            embedding_dim=embedding_dim,
            head_dropout=head_dropout,
        )
    return model.eval()
