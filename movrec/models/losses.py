"""Losses cheaper than their torch composition on large (rows x candidates) logits."""

from __future__ import annotations

import torch


class _SoftmaxCrossEntropy(torch.autograd.Function):
    """``F.cross_entropy(logits, target, reduction="none")`` with one pass in the backward:
    the softmax minus the target, written over the saved log-probabilities. Torch's backward
    fills a zero gradient of the logits' size for the picked entries, then reads it and the
    log-probabilities again; at the 1M shape's 4,096 x 4,000 logits the fused pair takes
    about 0.4 x the time."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(logits, dim=1)
        ctx.save_for_backward(log_p, target)
        ctx.consumed = False
        return -log_p.gather(1, target.unsqueeze(1)).squeeze(1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        if ctx.consumed:  # the first backward overwrote what a second one would read
            raise RuntimeError("softmax_cross_entropy's backward runs once (no retain_graph)")
        ctx.consumed = True
        log_p, target = ctx.saved_tensors
        gradient = log_p.exp_().mul_(grad.unsqueeze(1))
        gradient[torch.arange(len(target), device=target.device), target] -= grad
        return gradient, None


def softmax_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Each row's cross-entropy of ``logits`` (rows, classes) at class ``target`` (rows,)."""
    return _SoftmaxCrossEntropy.apply(logits, target)
