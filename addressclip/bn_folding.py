"""Batch norms folded into the convolutions before them, for image layers that no longer train.

A batch norm in eval mode is a per-channel affine map, so it can be merged into the weights and bias of the
convolution that feeds it (torch's `fuse_conv_bn_eval`): one pass over the activations instead of two. Batch norms
in this project never run in training mode (`freezing.py`), so folding the frozen layers changes what they compute
by float rounding only. EfficientNet-Lite0's frozen layers, the demo's caching pass and most of evaluation and
prediction, run 1.6x faster on this kind of 2-core CPU (`bench/bench_conv_layout.py`).
"""
from __future__ import annotations

import copy
import warnings

import torch
from timm.layers import BatchNormAct2d
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _after_norm(bn: nn.BatchNorm2d) -> nn.Module:
    """What a batch norm does after normalising: timm's BatchNormAct2d applies its dropout and activation."""
    return nn.Sequential(getattr(bn, "drop", nn.Identity()), getattr(bn, "act", nn.Identity()))


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and type(bn) in (nn.BatchNorm2d, BatchNormAct2d) and bn.running_mean is not None
            and bn.num_features == conv.out_channels)


def _fold(module: nn.Module) -> int:
    """Fold, in place, each batch norm registered right after the convolution that feeds it (timm's
    EfficientNet blocks register their layers in forward order); returns how many were folded."""
    names = list(module._modules)
    count = sum(_fold(module._modules[name]) for name in names if module._modules[name] is not None)
    for a, b in zip(names, names[1:]):
        conv, bn = module._modules[a], module._modules[b]
        if _foldable(conv, bn):
            module._modules[a] = fuse_conv_bn_eval(conv, bn)
            module._modules[b] = _after_norm(bn)
            count += 1
    return count


def _same_outputs(plain: nn.Module, folded: nn.Module, image_size: int) -> bool:
    """The fold checked on a random image in float64 on the CPU, autocast off: it tests the layers' order, not a
    device's rounding (bf16 autocast or TF32 convolutions would reject a right fold)."""
    probe = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        want = copy.deepcopy(plain).to("cpu", torch.float64)(probe)
        got = copy.deepcopy(folded).to("cpu", torch.float64)(probe)
    return torch.allclose(got, want, rtol=1e-3, atol=1e-4 * float(want.abs().max()) + 1e-9)


def folded_copy(layers: list[nn.Module], image_size: int) -> nn.Sequential:
    """An eval-mode copy of `layers` (applied in order) with batch norms folded, checked against the layers as
    they are (`_same_outputs`): where the fold changes the outputs beyond rounding (a block whose registration
    order is not its forward order), the unfolded copy is returned with a warning."""
    plain = copy.deepcopy(nn.Sequential(*layers)).eval().requires_grad_(False)
    for m in plain.modules():  # hooks on the originals (a saliency map's, say) are not the copy's
        for hooks in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks, m._backward_pre_hooks):
            hooks.clear()
    folded = copy.deepcopy(plain)
    if _fold(folded) == 0:
        return plain
    if not _same_outputs(plain, folded, image_size):
        warnings.warn("folding the frozen layers' batch norms changed their outputs beyond rounding; they run unfolded",
                      RuntimeWarning, stacklevel=2)
        return plain
    return folded
