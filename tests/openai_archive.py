"""OpenAI-format CLIP weight files, made the way OpenAI made theirs: a traced CLIP module saved as a
TorchScript archive, with the weights that OpenAI's `convert_weights` turns to fp16 stored in fp16.

The traced module is an open_clip CLIP (same parameter names as OpenAI's model), random init. Two details make
it match the released files: open_clip's text causal mask is a non-persistent buffer, which tracing would store
as an `attn_mask` key that no released archive has, so it becomes a plain attribute first; and the dtypes are
changed after tracing (a traced graph is dtype-agnostic), so the archive's own `encode_image` / `encode_text`
run after `.float()`, as `clip.load(..., jit=True)` does on a CPU.
"""
from __future__ import annotations

import copy
from pathlib import Path

import open_clip
import torch
from open_clip.model import convert_weights_to_lp

import addressclip.model  # noqa: F401  (registers the project's architectures with open_clip)


def make_openai_archive(arch: str, path: Path, fp16: bool = True, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None).eval()
    low = copy.deepcopy(model)
    convert_weights_to_lp(low, dtype=torch.float16)  # open_clip's copy of OpenAI's convert_weights
    dtypes = {name: p.dtype for name, p in low.named_parameters()}
    mask = model.attn_mask
    del model._buffers["attn_mask"]
    model.attn_mask = mask
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    image = torch.rand(2, 3, size, size)
    text = torch.zeros(2, model.context_length, dtype=torch.long)
    text[:, 0], text[:, 1] = 49406, 49407  # start and end of text
    with torch.no_grad():
        traced = torch.jit.trace_module(model, {"forward": (image, text), "encode_image": (image,), "encode_text": (text,)})
    if fp16:
        with torch.no_grad():
            for name, p in traced.named_parameters():
                p.data = p.data.to(dtypes[name])
    torch.jit.save(traced, str(path))
    return path
