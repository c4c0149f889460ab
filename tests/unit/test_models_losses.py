"""EMD (NIMA form, r=2) against hand-computed values; cross-entropy wiring."""

import math

import pytest
import torch

from galleryrank.models.losses import area_loss, emd, emd_loss, normalise_votes


def test_emd_identical_is_zero():
    p = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    assert emd(p, p).item() == pytest.approx(0.0, abs=1e-7)


def test_emd_one_bin_shift():
    # all mass in bin 1 vs bin 2 (K=3): CDFs (1,1,1) vs (0,1,1) -> diffs (1,0,0)
    # EMD = sqrt((1 + 0 + 0) / 3)
    a = torch.tensor([[1.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 1.0, 0.0]])
    assert emd(a, b).item() == pytest.approx(math.sqrt(1 / 3), rel=1e-6)


def test_emd_hand_computed_ten_bins_and_batch_mean():
    # pred uniform over 10 bins, truth all on bin 10: CDF diffs = k/10 for k=1..9, then 0
    pred = torch.full((1, 10), 0.1)
    true = torch.zeros(1, 10)
    true[0, 9] = 1.0
    expected = math.sqrt(sum((k / 10) ** 2 for k in range(1, 10)) / 10)
    assert emd(pred, true).item() == pytest.approx(expected, rel=1e-6)
    # batch mean of that case and a zero case
    batch = emd(torch.cat([pred, true]), torch.cat([true, true]))
    assert batch.item() == pytest.approx(expected / 2, rel=1e-6)
    per = emd(torch.cat([pred, true]), torch.cat([true, true]), reduction="none")
    assert per.tolist() == pytest.approx([expected, 0.0], abs=1e-7)


def test_emd_r1_is_mean_abs_cdf_difference():
    a = torch.tensor([[0.5, 0.5, 0.0]])
    b = torch.tensor([[0.0, 0.5, 0.5]])
    # CDFs (0.5,1,1) vs (0,0.5,1): diffs (0.5,0.5,0) -> r=1: mean = 1/3
    assert emd(a, b, r=1).item() == pytest.approx(1 / 3, rel=1e-6)


def test_emd_loss_has_gradient_toward_target():
    logits = torch.zeros(2, 10, requires_grad=True)
    target = normalise_votes(torch.tensor([[0, 0, 0, 0, 0, 0, 0, 0, 1, 9], [9, 1, 0, 0, 0, 0, 0, 0, 0, 0]]))
    assert torch.allclose(target.sum(1), torch.ones(2))
    loss = emd_loss(logits, target)
    loss.backward()
    # raising the logit of bin 10 lowers the loss for sample 0: negative gradient there
    assert logits.grad[0, 9] < 0 and logits.grad[1, 0] < 0


def test_area_loss_is_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert area_loss(logits, torch.tensor([0])).item() == pytest.approx(expected, rel=1e-6)
