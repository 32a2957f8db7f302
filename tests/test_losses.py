"""The fused softmax cross-entropy equals torch's, value and gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from movrec.models.losses import softmax_cross_entropy


def weighted_loss_and_gradient(loss_fn, logits, target, weights):
    leaf = logits.detach().clone().requires_grad_(True)
    losses = loss_fn(leaf, target)
    (losses * weights).sum().backward()
    return losses.detach(), leaf.grad


def test_values_and_gradients_equal_torchs_cross_entropy():
    generator = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(300, 700, generator=generator)
    target = torch.randint(0, 700, (300,), generator=generator)
    weights = torch.rand(300, generator=generator)
    weights[:10] = 0.0  # rows that weigh nothing (model.unliked_weight=0)
    ours = weighted_loss_and_gradient(softmax_cross_entropy, logits, target, weights)
    reference = weighted_loss_and_gradient(
        lambda x, t: F.cross_entropy(x, t, reduction="none"), logits, target, weights
    )
    torch.testing.assert_close(ours[0], reference[0])
    torch.testing.assert_close(ours[1], reference[1])
    assert ours[1][:10].abs().max() == 0


def test_a_second_backward_fails_instead_of_reading_overwritten_values():
    logits = torch.randn(4, 5, requires_grad=True)
    loss = softmax_cross_entropy(logits, torch.tensor([0, 1, 2, 3])).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="runs once"):
        loss.backward()
