"""Losses: NIMA's Earth Mover's Distance for score distributions, cross-entropy for areas."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalise_votes(votes: torch.Tensor) -> torch.Tensor:
    """Vote counts (N, 10) -> distributions that sum to 1 (idealo normalises labels the same way)."""
    votes = votes.float()
    return votes / votes.sum(dim=1, keepdim=True).clamp_min(1e-12)


def emd(p_pred: torch.Tensor, p_true: torch.Tensor, r: float = 2.0, reduction: str = "mean") -> torch.Tensor:
    """NIMA EMD: (mean over bins |CDF_pred - CDF_true|^r)^(1/r), per sample; batch mean by default.

    Talebi & Milanfar 2018, eq. 1, with r = 2; idealo's ``earth_movers_distance``.
    Both inputs are (N, K) probability distributions over ordered bins.
    """
    cdf_diff = torch.cumsum(p_pred.float(), dim=1) - torch.cumsum(p_true.float(), dim=1)
    per_sample = cdf_diff.abs().pow(r).mean(dim=1).pow(1.0 / r)
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    return per_sample.mean()


def emd_loss(logits: torch.Tensor, p_true: torch.Tensor, r: float = 2.0) -> torch.Tensor:
    """EMD of softmax(logits) against target distributions."""
    return emd(logits.float().softmax(dim=1), p_true, r=r)


def area_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy for the area tagger (class indices as targets)."""
    return F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)
