"""Which parameters train, per tower: ``all``, ``none``, ``proj`` (projection only) or ``last:N``
(the last N blocks and everything after them). The paper ablates this, and it decides CPU cost.

Frozen sub-modules are kept in eval mode, and batch-norm statistics are always frozen (small per-rank
batches make running statistics noisy, and it keeps multi-process training identical to one process).
"""
from __future__ import annotations

import re

from torch import nn

from .errors import UserError

MODES = ("all", "none", "proj", "last:N")


def parse_mode(mode: str, name: str = "trainable mode") -> tuple[str, int]:
    m = re.fullmatch(r"last:(\d+)", str(mode))
    if m:
        return "last", int(m.group(1))
    if mode in ("all", "none", "proj"):
        return mode, 0
    raise UserError(f"unknown {name} {mode!r}; valid: all, none, proj, last:N (N a whole number)")


def check_block_count(backbone: str, tower: str, mode: str) -> None:
    """Refuse ``last:N`` with more blocks than the `tower` of `backbone` has, before any model or data is loaded
    (the counts come from the architecture: `model.tower_blocks`)."""
    kind, n = parse_mode(mode, f"train_{tower}")
    if kind != "last" or n == 0:
        return
    from .model import tower_blocks

    counts = tower_blocks(backbone)
    if counts is not None and n > counts[tower]:
        raise UserError(f"train_{tower} {mode!r} asks for the last {n} blocks, but backbone {backbone}'s {tower} tower "
                        f"has {counts[tower]}; valid: all, none, proj, last:0 .. last:{counts[tower]}")


def _tower_params(clip: nn.Module, tower: str) -> list[tuple[str, nn.Parameter]]:
    """The tower's parameters in forward order."""
    named = list(clip.named_parameters())
    if tower == "image":
        return [(n, p) for n, p in named if n.startswith("visual.")]
    text = [(n, p) for n, p in named if not n.startswith("visual.") and not n.startswith("logit_")]
    if not hasattr(clip, "text"):  # built-in CLIP registers the transformer before its embeddings
        first = ("token_embedding", "positional_embedding")
        text.sort(key=lambda np_: 0 if np_[0].startswith(first) else 1)
    return text


def _blocks(clip: nn.Module, tower: str) -> list[nn.Module]:
    if tower == "image":
        v = clip.visual
        if hasattr(v, "trunk"):
            return list(v.trunk.blocks) if hasattr(v.trunk, "blocks") else list(v.trunk.stages)
        if hasattr(v, "transformer"):
            return list(v.transformer.resblocks)
        return [v.layer1, v.layer2, v.layer3, v.layer4]  # ModifiedResNet
    if hasattr(clip, "text"):
        if hasattr(clip.text, "transformer"):
            hf = clip.text.transformer
            enc = hf.encoder if hasattr(hf, "encoder") else hf
            return list(getattr(enc, "layer", getattr(enc, "layers", [])))
        return list(clip.text.transformer.resblocks)
    return list(clip.transformer.resblocks)


def projection_names(clip: nn.Module, tower: str) -> set[str]:
    names = {n for n, _ in _tower_params(clip, tower)}
    prefixes = ("visual.head.", "visual.proj", "visual.attnpool.") if tower == "image" else ("text.proj", "text_projection")
    return {n for n in names if n.startswith(prefixes)}


def trainable_names(clip: nn.Module, tower: str, mode: str) -> set[str]:
    kind, n = parse_mode(mode)
    params = _tower_params(clip, tower)
    if kind == "all":
        return {name for name, _ in params}
    if kind == "none":
        return set()
    proj = projection_names(clip, tower)
    if kind == "proj" or n == 0:
        return proj
    blocks = _blocks(clip, tower)
    if n > len(blocks):
        raise ValueError(f"{tower} tower has {len(blocks)} blocks; last:{n} asks for more")
    first_id = id(next(blocks[-n].parameters()))
    start = next(i for i, (_, p) in enumerate(params) if id(p) == first_id)
    return {name for name, _ in params[start:]} | proj


def apply_trainable(model: nn.Module, modes_only: bool = False) -> None:
    """Set requires_grad from ``model.spec`` (unless `modes_only`), then put frozen parts in eval mode."""
    clip = model.clip
    if not modes_only:
        train = trainable_names(clip, "image", model.spec.train_image) | trainable_names(clip, "text", model.spec.train_text)
        for name, p in clip.named_parameters():
            p.requires_grad_(name in train or name.startswith("logit_"))
    if not model.training:
        return
    for module in clip.modules():
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def frozen_text_trunk(model: nn.Module) -> bool:
    """True when nothing in the text tower trains except its projection (so trunk outputs can be cached)."""
    # asked at every text encoding: the trunk's parameters are listed once per model (walking the module tree
    # each time cost ~4 ms a training step); their requires_grad flags are read fresh every time
    trunk = model.__dict__.get("_text_trunk_params")
    if trunk is None:
        proj = projection_names(model.clip, "text")
        trunk = [p for n, p in _tower_params(model.clip, "text") if n not in proj]
        model.__dict__["_text_trunk_params"] = trunk
    return not any(p.requires_grad for p in trunk)
