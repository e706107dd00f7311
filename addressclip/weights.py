"""Reading a `pretrained` weights file for an open_clip architecture.

Accepted, recognised by content (not by file name):

- **OpenAI's released archives** (``ViT-B-16.pt`` as the ``clip`` package downloads it): a TorchScript archive of
  a traced CLIP, most weights in fp16 (fp32 archives too), read with ``torch.jit.load`` as open_clip's OpenAI
  loader reads it (TorchScript, no pickled Python objects). OpenAI's models were trained with QuickGELU, so only
  ``-quickgelu`` architectures take them.
- **State dicts** written by ``torch.save`` (``.pt`` / ``.bin`` / ``.pth``, open_clip's layout, optionally under a
  ``state_dict`` key or with a ``module.`` prefix), and this project's own ``model.pt`` (under ``model``):
  read with ``weights_only=True``.
- **safetensors** files.

Nothing here ever unpickles without ``weights_only=True``: a file holding other pickled objects is refused.
"""
from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path

import open_clip
import torch
from torch import nn

FORMATS = ("openai-torchscript", "state-dict", "safetensors")
ACCEPTED = ("OpenAI's TorchScript archive (e.g. ViT-B-16.pt as released), a state dict saved with torch.save "
            "(.pt/.bin/.pth, open_clip key names), or a .safetensors file")


class WeightsFileError(ValueError):
    """A `pretrained` file that is none of the accepted formats, or does not fit the architecture."""


def weights_format(path: str | Path) -> str:
    """One of FORMATS, from the file's bytes; raises WeightsFileError naming what was found otherwise."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(16)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as exc:
            raise WeightsFileError(f"{path}: a damaged zip archive ({exc}); accepted: {ACCEPTED}") from None
        # TorchScript archives carry the module's code and constants; torch.save archives only data.pkl + tensors
        if any("/code/" in n or n.endswith("constants.pkl") for n in names):
            return "openai-torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "state-dict"
        raise WeightsFileError(f"{path}: a zip archive of {len(names)} files ({', '.join(names[:3])}...) that is "
                               f"neither a TorchScript archive nor a torch.save file; accepted: {ACCEPTED}")
    if len(head) >= 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= path.stat().st_size - 8:
            return "safetensors"
    if head[:1] == b"\x80":  # a pickle protocol mark: torch.save's legacy (non-zip) format
        return "state-dict"
    found = "an empty file" if not head else f"a file starting with bytes {head[:8]!r}"
    raise WeightsFileError(f"{path}: not a weights file ({found}); accepted: {ACCEPTED}")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The open_clip-named tensors of a `pretrained` file, in the dtypes stored (fp16 for OpenAI's archives)."""
    path = Path(path)
    fmt = weights_format(path)
    if fmt == "openai-torchscript":
        return _openai_state_dict(path)
    if fmt == "safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for a damaged header
            raise WeightsFileError(f"{path}: unreadable safetensors file ({exc}); accepted: {ACCEPTED}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsFileError(
            f"{path}: holds pickled objects other than tensors, which are never unpickled here ({first}); "
            f"save a state dict (torch.save(model.state_dict(), ...)) instead; accepted: {ACCEPTED}") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise WeightsFileError(f"{path}: unreadable ({type(exc).__name__}: {exc}); accepted: {ACCEPTED}") from None
    return _unwrap(state, path)


def _unwrap(state, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    elif isinstance(state, dict) and isinstance(state.get("model"), dict) and "spec" in state:
        if "frozen_digest" in state:
            raise WeightsFileError(f"{path}: an epoch's resume checkpoint, holding only the weights that train; give the "
                                   f"run's model.pt")
        state = state["model"]  # this project's model.pt
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsFileError(f"{path}: holds a {type(state).__name__}, not a dict of tensors; accepted: {ACCEPTED}")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _openai_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The archive's tensors, read as open_clip's OpenAI loader reads them (``torch.jit.load``, then the module's
    state dict without OpenAI's three integer entries). OpenAI's parameter names are open_clip's, so no key is
    converted. The loader's own rebuild (``build_model_from_openai_state_dict``) is not used: it rounds every
    archive to fp16 before loading, which is exact for OpenAI's released fp16 files but changed the features of
    an fp32 archive by up to 1.6e-3 (measured on the rehearsal architecture)."""
    try:
        archive = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch.jit raises RuntimeError for archives it cannot read
        raise WeightsFileError(f"{path}: a TorchScript archive that cannot be read ({type(exc).__name__}: {exc}); "
                               f"accepted: {ACCEPTED}") from None
    state = dict(archive.state_dict())
    for key in ("input_resolution", "context_length", "vocab_size"):
        state.pop(key, None)
    return state


def load_pretrained(clip: nn.Module, backbone: str, path: str | Path) -> str:
    """Load `path` into `clip` (an open_clip model of architecture `backbone`); returns the file's format.
    Every tensor must match: a file of another architecture is refused with the mismatching keys."""
    fmt = weights_format(path)
    config = open_clip.get_model_config(backbone) or {}
    if fmt == "openai-torchscript" and not config.get("quick_gelu", False):
        quick = f"{backbone}-quickgelu"
        hint = f" (use {quick})" if quick in open_clip.list_models() else " (use a -quickgelu architecture)"
        raise WeightsFileError(f"{path} is an OpenAI archive: its weights were trained with QuickGELU, but backbone "
                               f"{backbone!r} uses GELU{hint}")
    state = read_state_dict(path)
    from open_clip.model import resize_pos_embed

    resize_pos_embed(state, clip)  # a forced image size other than the file's
    own = clip.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        detail = "; ".join(f"{what} {keys[:3]}{'...' if len(keys) > 3 else ''}" for what, keys in
                           (("missing", missing), ("unexpected", unexpected), ("other shapes", shapes)) if keys)
        raise WeightsFileError(f"{path} ({fmt}) does not fit backbone {backbone!r}: {detail}")
    clip.load_state_dict(state)  # copies into the model's own (fp32) tensors
    return fmt

