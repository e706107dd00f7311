"""Prompt-learning baselines on a frozen dual encoder: CoOp, CoCoOp and MaPLe.

- CoOp (Zhou et al., "Learning to Prompt for Vision-Language Models", IJCV 2022): M context vectors, shared by
  every class, live in the text tower's token-embedding space and are put in front of the class tokens; only
  they train, by cross-entropy of the image against every class text.
- CoCoOp (Zhou et al., "Conditional Prompt Learning for Vision-Language Models", CVPR 2022): the same context
  plus a small meta-net (Linear-ReLU-Linear, bottleneck dim/16) of the image feature added to every context
  vector, so the class texts are re-encoded for each image.
- MaPLe (Khattak et al., "MaPLe: Multi-modal Prompt Learning", CVPR 2023): learned prompt tokens in the first J
  layers of the text transformer, each mapped by its own linear coupling function to a prompt token of the ViT
  image transformer at the same depth, so both towers are prompted and the prompts are tied.

Here the classes are the dataset's candidate addresses (``bank.ds.addresses``), so addresses never seen in
training are still ranked (open vocabulary). CoOp and CoCoOp train on the bank's cached image features; MaPLe
changes the image tower's computation, so it encodes images itself. Hyperparameters (learning rate, number of
epochs) are chosen on the val split only (`select_on_val`, by `by_val_accuracy`); the test split is ranked and
timed by `common.finish` (``query_ms``: `inference.timed_ranking`, as for every method) and scored by
`evaluate.result_from_ranking`. The towers stay frozen and the passed model is left as it was found.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import open_clip
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from ..data import ImageRows
from . import BaselineResult, NotApplicable
from .common import BestOnVal, finish, nbytes, over_gallery, rank_by, run_epochs

COOP_INIT = "a street view at"     # word init for 4 context vectors (CoOp initialises from "a photo of a")
MAPLE_INIT = "street view"         # word init for MaPLe's default 2 prompt tokens
# Learning-rate grids (SGD, momentum 0.9, cosine), each value a full run; the best (lr, epoch) on val wins.
# CoOp/CoCoOp: the papers' 0.002 is tuned to CLIP's token space; MiniLM's word embeddings are larger and its
# projection starts random, where 0.002 barely moves the context (fixture: no change in 40 steps), so the grid
# also holds 100x that. MaPLe applies to CLIP ViTs only: the paper's 0.0035 and 10x.
TEXT_LRS = (0.002, 0.2)
MAPLE_LRS = (0.0035, 0.035)
# The prompted texts go through the tower in groups of similar length (`length_groups`): a further group costs as
# much as this many more tokens in one pass (its calls, smaller matrix products). Every text is re-encoded at each
# step, so padding is compute: CoOp's 180 demo addresses of 10-32 tokens (+4 context) padded to 36 are 26% padding.
GROUP_PASS_TOKENS = 64


# --- the frozen model ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def frozen(model):
    """Freeze every weight and switch to eval mode for the duration; restore both afterwards.

    Gradients still flow *through* the towers to the prompt parameters, which are not part of the model."""
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    was_training = model.training
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    try:
        yield model
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(flags[name])
        model.train(was_training)


def _logit_scale(model) -> torch.Tensor:
    """CLIP's learned temperature, clamped like CLIP's training at 100, as a constant."""
    return model.logit_scale.detach().exp().clamp(max=100.0)


def _run_blocks(transformer: nn.Module, x: torch.Tensor, attn_mask=None, before: Callable | None = None) -> torch.Tensor:
    """Run a transformer's residual blocks one by one on batch-first `x`, calling ``before(i, x)`` (batch-first)
    ahead of block i so deep prompts can replace tokens between layers."""
    seq_first = not getattr(transformer, "batch_first", True)
    for i, block in enumerate(transformer.resblocks):
        if before is not None:
            x = before(i, x)
        x = block(x.transpose(0, 1), attn_mask=attn_mask).transpose(0, 1) if seq_first else block(x, attn_mask=attn_mask)
    return x


def _trim_padding(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop trailing columns that are padding in every row (exact: the towers ignore padding)."""
    used = (tokens != pad_id).any(dim=0).nonzero()
    return tokens[:, : int(used.max()) + 1] if len(used) else tokens[:, :1]


class PromptedText:
    """The frozen text tower of `model` over a fixed list of texts, with ``n_ctx`` vectors inserted right after
    the start token: ``[SOT] [V]_1 .. [V]_M <text tokens> [EOT]`` (CoOp's "[V]_1 ... [V]_M [CLASS]" with the
    class name as its own tokens, end token included).

    - HF/BERT tower (MiniLM): after [CLS]; `inputs_embeds` and the attention mask widened by M go to the BertModel,
      which adds its own position and type embeddings; then the tower's pooler and projection.
    - open_clip's built-in CLIP tower: after SOT; positional embeddings for the longer sequence, the causal mask
      cut to its length, ln_final, the EOT position (shifted by M) pooled, text_projection.

    With M vectors set to the token embeddings of a phrase, this equals the plain tower on "phrase text".
    """

    def __init__(self, model, texts: Sequence[str], n_ctx: int, pass_tokens: int | None = None):
        self.model, self.n_ctx, self.hf = model, int(n_ctx), model.hf_text
        clip = model.clip
        if self.hf:
            self.embedding = clip.text.transformer.get_input_embeddings()
            positions = clip.text.transformer.config.max_position_embeddings
        else:
            self.embedding = clip.token_embedding
            positions = clip.positional_embedding.shape[0]
        limit = min(positions, model.tokenizer.context_length or positions)
        if self.n_ctx >= limit - 1:
            raise ValueError(f"n_ctx={n_ctx} leaves no room for text in a context of {limit} tokens")
        # Tokenize with room for the context vectors; the tokenizer truncates and keeps its end token.
        tokens = model.tokenizer(list(texts), context_length=limit - self.n_ctx)
        self.tokens = _trim_padding(tokens, model.pad_id).to(model.device)
        self.mask = (self.tokens != model.pad_id).long()
        with torch.no_grad():
            self.embeds = self.embedding(self.tokens).detach()  # [C, L, W]: the class tokens never change
        if not len(self.tokens):
            raise ValueError("PromptedText needs at least one text")
        # each pass runs the texts in groups of similar length, each cut to its own longest text: (rows, token
        # embeddings, mask, token ids) per group. Lengths by `token_lengths`: CLIP's id 0 is also a real token ("!")
        lengths = model.token_lengths(self.tokens).tolist()
        self.groups = []
        for rows, n in length_groups(lengths, self.n_ctx, pass_tokens):
            rows = torch.as_tensor(rows, device=self.tokens.device)
            self.groups.append((rows, self.embeds[rows, :n], self.mask[rows, :n], self.tokens[rows, :n]))
        self.class_order = torch.argsort(torch.cat([group[0] for group in self.groups]))

    @property
    def width(self) -> int:
        return self.embeds.shape[-1]

    @property
    def num_texts(self) -> int:
        return self.embeds.shape[0]

    def phrase_embedding(self, phrase: str) -> torch.Tensor:
        """Token embeddings of `phrase` without its start and end tokens: CoOp's word initialisation."""
        tokens = self.model.tokenizer([phrase])[0]
        length = int((tokens != self.model.pad_id).sum())
        with torch.no_grad():
            return self.embedding(tokens[1 : length - 1].to(self.model.device)).detach().float()

    def encode(self, ctx: torch.Tensor, deep: Sequence[torch.Tensor] = (), normalize: bool = True) -> torch.Tensor:
        """Features of every text with context `ctx`: [M, W] shared (-> [C, D]) or [B, M, W] one per image
        (-> [B, C, D], CoCoOp). `deep` (built-in tower only, MaPLe): prompts [M, W] that replace the context
        tokens at the input of layers 1, 2, ... Each group of similar length (`length_groups`) goes through the
        tower on its own, cut to its longest text: the towers ignore padding, so only float rounding differs."""
        per_image = ctx.dim() == 3
        B = ctx.shape[0] if per_image else 1
        W = self.width
        ctx = ctx.reshape(B, 1, self.n_ctx, W).to(self.embeds.dtype)
        pooled = []
        for _, emb, mask, tokens in self.groups:
            c, n = emb.shape[:2]
            emb = emb.unsqueeze(0).expand(B, c, n, W)
            x = torch.cat([emb[:, :, :1], ctx.expand(B, c, self.n_ctx, W), emb[:, :, 1:]], dim=2).reshape(B * c, n + self.n_ctx, W)
            out = self._hf_pooled(x, mask, B) if self.hf else self._clip_pooled(x, tokens, B, deep)
            pooled.append(out.reshape(B, c, -1))
        pooled = torch.cat(pooled, dim=1)[:, self.class_order]  # [B, C, D'] in the texts' order
        feats = self.model.project_text(pooled.reshape(B * self.num_texts, -1))
        feats = F.normalize(feats, dim=-1) if normalize else feats
        return feats.reshape(B, self.num_texts, -1) if per_image else feats

    def _widened(self, t: torch.Tensor, fill: int, B: int) -> torch.Tensor:
        """Insert M columns of `fill` after the first: the token ids / mask of the prompted sequence."""
        t = torch.cat([t[:, :1], torch.full((t.shape[0], self.n_ctx), fill, dtype=t.dtype, device=t.device), t[:, 1:]], 1)
        return t.repeat(B, 1)

    def _hf_pooled(self, x: torch.Tensor, mask: torch.Tensor, B: int) -> torch.Tensor:
        text = self.model.clip.text
        mask = self._widened(mask, 1, B)  # the context vectors are attended to, like words
        out = text.transformer(inputs_embeds=x, attention_mask=mask)
        return text.pooler(out, mask)

    def _clip_pooled(self, x: torch.Tensor, tokens: torch.Tensor, B: int, deep: Sequence[torch.Tensor]) -> torch.Tensor:
        clip = self.model.clip
        cast = clip.transformer.get_cast_dtype()
        n = x.shape[1]
        x = x.to(cast) + clip.positional_embedding[:n].to(cast)
        mask = clip.attn_mask[:n, :n] if clip.attn_mask is not None else None
        m = self.n_ctx

        def replace(i, h):  # MaPLe: fresh learned prompts at the input of layers 1..J-1
            if 0 < i <= len(deep):
                h = torch.cat([h[:, :1], deep[i - 1].to(h.dtype).expand(h.shape[0], m, h.shape[2]), h[:, 1 + m :]], 1)
            return h

        x = clip.ln_final(_run_blocks(clip.transformer, x, mask, replace if len(deep) else None))
        # Pool with the tower's own rule on token ids widened by M pad ids: the EOT (argmax) moves by M.
        ids = self._widened(tokens, self.model.pad_id, B)
        return open_clip.transformer.text_global_pool(x, ids, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None))


def length_groups(lengths: Sequence[int], n_ctx: int = 0, pass_tokens: int | None = None
                  ) -> list[tuple[list[int], int]]:
    """Texts (their token `lengths`) in groups of consecutive lengths, as (indices, longest): the grouping with the
    fewest tokens through the tower, each group padded to its longest plus `n_ctx` context vectors, counting
    `pass_tokens` for each group beyond the first (a separate pass: more calls, smaller matrix products); the
    optimum, by dynamic programming over the distinct lengths. `pass_tokens` None: GROUP_PASS_TOKENS."""
    pass_tokens = GROUP_PASS_TOKENS if pass_tokens is None else pass_tokens
    by_length: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        by_length.setdefault(int(n), []).append(i)
    distinct = sorted(by_length)
    counts = [len(by_length[n]) for n in distinct]
    # best[j]: least cost of the texts of the j shortest lengths; start[j]: where the last group begins
    best, start = [0.0] + [math.inf] * len(distinct), [0] * (len(distinct) + 1)
    for j in range(1, len(distinct) + 1):
        texts = 0
        for i in range(j - 1, -1, -1):
            texts += counts[i]
            cost = best[i] + texts * (distinct[j - 1] + n_ctx) + (pass_tokens if i > 0 else 0)
            if cost < best[j]:
                best[j], start[j] = cost, i
    groups, j = [], len(distinct)
    while j > 0:
        i = start[j]
        groups.append(([k for n in distinct[i:j] for k in by_length[n]], distinct[j - 1]))
        j = i
    return groups[::-1]


def init_context(text: PromptedText, n_ctx: int, init: str | None, generator: torch.Generator) -> tuple[torch.Tensor, str]:
    """CoOp's two initialisations: the embeddings of `init` when it has exactly `n_ctx` tokens, else N(0, 0.02)."""
    if init and n_ctx > 0:
        words = text.phrase_embedding(init)
        if words.shape[0] == n_ctx:
            return words.clone(), f"word:{init!r}"
    return torch.randn(n_ctx, text.width, generator=generator) * 0.02, "random:N(0,0.02)"


# --- training with selection on val --------------------------------------------------------------------------

def by_val_accuracy(figures: dict) -> tuple:
    """The prompt methods' rule on val: top-1 accuracy of the prompt's logits (rounded to 1e-6), then the lower
    cross-entropy of those logits. (The other baselines' `common.by_val_ssa` orders by SSA-1 then SSA-k.)"""
    return (figures["val_acc1"], -figures["val_loss"])


def _as_grid(lr) -> list[float]:
    return [float(x) for x in (lr if isinstance(lr, (list, tuple)) else [lr])]


def _val_figures(logits: torch.Tensor, labels: torch.Tensor) -> dict | None:
    if len(labels) == 0:
        return None
    acc = (logits.argmax(1) == labels).float().mean().item()
    return {"val_acc1": round(acc, 6), "val_loss": F.cross_entropy(logits, labels).item()}


def select_on_val(
    build: Callable[[], nn.Module],
    loss_fn: Callable[[nn.Module, object], torch.Tensor],
    val_logits: Callable[[nn.Module], tuple[torch.Tensor, torch.Tensor]],
    batches: Callable[[torch.Generator], Iterable],
    steps_per_epoch: int,
    lrs: Sequence[float],
    epochs: int,
    seed: int,
    max_steps: int | None = None,
    progress: bool = False,
    desc: str = "prompts",
) -> BestOnVal:
    """Train a fresh prompt module per learning rate (SGD, momentum 0.9, cosine decay per step as in CoOp) and
    keep the (lr, epoch) state that scores best on val (`by_val_accuracy`; the first of equals). Every run starts
    from the same seed. Without val images nothing can be chosen: the first lr's last epoch is kept. Returns the
    `common.BestOnVal` (``chosen``: lr and epoch; ``figures``: val_acc1, val_loss; ``state``; ``history``)."""
    best = BestOnVal(by_val_accuracy)
    for lr in lrs:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)  # shuffling order, independent of the global RNG
        module = build()
        total = max(1, epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch))
        opt = torch.optim.SGD(module.parameters(), lr=lr, momentum=0.9)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        bar = tqdm(total=total, desc=f"{desc} lr={lr:g}", disable=not progress, leave=False)

        def after_epoch(epoch, step):
            module.eval()
            with torch.no_grad():
                figures = _val_figures(*val_logits(module))
            if figures is not None:
                best.offer(figures, {"lr": lr, "epoch": epoch}, module.state_dict(), steps=step)
            elif lr == lrs[0]:  # no val split: keep the first lr's latest state
                best.keep({"val_acc1": float("nan"), "val_loss": float("nan")}, {"lr": lr, "epoch": epoch},
                          module.state_dict())
            module.train()

        module.train()
        run_epochs(opt, sched, lambda: batches(gen), lambda batch: loss_fn(module, batch), epochs, after_epoch,
                   max_steps=total, on_step=lambda: bar.update(1))
        bar.close()
    return best


def _index_batches(n: int, batch_size: int) -> tuple[Callable[[torch.Generator], Iterable], int]:
    """Shuffled index batches over n cached rows, dropping the last short batch when there is more than one."""
    bs = max(1, min(batch_size, n))
    steps = max(1, n // bs)

    def batches(gen):
        return torch.randperm(n, generator=gen)[: steps * bs].split(bs)

    return batches, steps


def _features(bank, split: str, device) -> torch.Tensor:
    """A split's cached image features on `device`, as an ordinary tensor (a fresh bank's come from inference
    mode, which autograd refuses to save for backward, e.g. as the meta-net's input)."""
    return bank.image[split].to(device).clone()


def _check_inputs(bank, model, method: str) -> None:
    if model is None:
        raise ValueError(f"{method} needs the model whose text tower it prompts (the one that made the bank)")
    if len(bank.image["train"]) == 0:
        raise ValueError(f"{method} needs training images; the train split is empty")


def _chosen(sel: BestOnVal, **extra) -> dict:
    return {"lr": sel.chosen["lr"], "epochs": sel.chosen["epoch"], "val_acc1": sel.figures["val_acc1"], **extra}


# --- CoOp ----------------------------------------------------------------------------------------------------

class CoOpPrompt(nn.Module):
    """CoOp's unified context: M vectors shared across classes (Zhou et al. 2022, Sec. 3.2)."""

    def __init__(self, ctx: torch.Tensor):
        super().__init__()
        self.ctx = nn.Parameter(ctx.clone())

    def text_features(self, text: PromptedText) -> torch.Tensor:
        return text.encode(self.ctx)


@dataclass
class PromptFit:
    """A trained prompt with the text view it was trained for and the choice made on val."""

    prompt: nn.Module
    text: PromptedText
    selected: BestOnVal
    init: str


def fit_coop(bank, model, seed: int = 0, n_ctx: int = 4, init: str | None = COOP_INIT, epochs: int = 5,
             lr: float | Sequence[float] = TEXT_LRS, batch_size: int = 32, max_steps: int | None = None,
             progress: bool = False) -> PromptFit:
    """Train CoOp context vectors on the bank's cached train image features; choose lr and epoch on val.
    Call inside `frozen(model)`."""
    text = PromptedText(model, bank.ds.addresses, n_ctx)
    torch.manual_seed(seed)
    ctx0, how = init_context(text, n_ctx, init, torch.Generator().manual_seed(seed))
    device = model.device
    feats = {s: _features(bank, s, device) for s in ("train", "val")}
    labels = {s: bank.labels[s].to(device) for s in ("train", "val")}
    scale = _logit_scale(model)

    def loss_fn(prompt, idx):
        logits = scale * feats["train"][idx] @ prompt.text_features(text).T
        return F.cross_entropy(logits, labels["train"][idx])

    def val_logits(prompt):
        return scale * feats["val"] @ prompt.text_features(text).T, labels["val"]

    batches, steps = _index_batches(len(feats["train"]), batch_size)
    sel = select_on_val(lambda: CoOpPrompt(ctx0).to(device), loss_fn, val_logits, batches, steps, _as_grid(lr),
                        epochs, seed, max_steps, progress, "CoOp")
    prompt = CoOpPrompt(ctx0).to(device)
    prompt.load_state_dict(sel.state)
    return PromptFit(prompt.eval(), text, sel, how)


def run_coop(bank, model=None, seed: int = 0, k: int = 5, n_ctx: int = 4, init: str | None = COOP_INIT,
             epochs: int = 5, lr: float | Sequence[float] = TEXT_LRS, batch_size: int = 32,
             max_steps: int | None = None, progress: bool = False) -> BaselineResult:
    """CoOp (Zhou et al., IJCV 2022): learned shared context in front of every address; towers frozen.

    Trains on cached image features; lr (grid) and epoch chosen on val; the test split is ranked against the
    gallery of prompted address features, which is all CoOp stores besides the context itself."""
    _check_inputs(bank, model, "CoOp")
    with frozen(model):
        fit = fit_coop(bank, model, seed, n_ctx, init, epochs, lr, batch_size, max_steps, progress)
        with torch.no_grad():
            gallery = fit.prompt.text_features(fit.text).float()
        storage = nbytes(*fit.prompt.parameters(), gallery)
        chosen = _chosen(fit.selected, n_ctx=n_ctx, init=fit.init, batch_size=batch_size)
        notes = (f"CoOp: {n_ctx} shared context vectors ({fit.init}) after the start token; frozen towers; trained "
                 f"on cached train image features, lr grid {_as_grid(lr)} x epochs 1..{epochs} chosen on val; "
                 f"addresses unseen in train are ranked too.")
        feats = _features(bank, "test", gallery.device)
        return finish("coop", bank, over_gallery(gallery.to(feats.dtype)), k, chosen, storage, notes, queries=feats)


# --- CoCoOp --------------------------------------------------------------------------------------------------

class CoCoOpPrompt(nn.Module):
    """CoCoOp's conditional context: v_m(x) = v_m + pi(x), pi a Linear-ReLU-Linear meta-net with a dim/16
    bottleneck over the image feature x (Zhou et al. 2022b, Sec. 3.2)."""

    def __init__(self, ctx: torch.Tensor, image_dim: int):
        super().__init__()
        self.ctx = nn.Parameter(ctx.clone())
        hidden = max(1, image_dim // 16)
        self.meta_net = nn.Sequential(nn.Linear(image_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, ctx.shape[1]))

    def context(self, image_feats: torch.Tensor) -> torch.Tensor:
        return self.ctx.unsqueeze(0) + self.meta_net(image_feats).unsqueeze(1)  # [B, M, W]

    def logits(self, text: PromptedText, image_feats: torch.Tensor, scale: torch.Tensor, chunk: int = 1) -> torch.Tensor:
        """Scores of each image against every class, encoding the classes per image in chunks of images."""
        out = []
        for i in range(0, len(image_feats), chunk):
            x = image_feats[i : i + chunk]
            out.append(scale * torch.einsum("bd,bcd->bc", x, text.encode(self.context(x))))
        return torch.cat(out) if out else image_feats.new_zeros(0, text.num_texts)


def _cocoop_chunk(num_classes: int, budget: int = 1024) -> int:
    """Images per text-encoder call at inference: about `budget` prompted sequences per call."""
    return max(1, budget // max(1, num_classes))


def _limit(n: int, max_n: int | None, seed: int) -> torch.Tensor:
    """Row indices of a split, a seeded random subset when capped (for selection passes that re-encode)."""
    if max_n is None or n <= max_n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))[:max_n].sort().values


def fit_cocoop(bank, model, seed: int = 0, n_ctx: int = 4, init: str | None = COOP_INIT, epochs: int = 2,
               lr: float | Sequence[float] = TEXT_LRS, batch_size: int = 4, max_steps: int | None = None,
               max_val: int | None = 500, progress: bool = False) -> PromptFit:
    """Train CoCoOp (context + meta-net) on cached train image features; lr and epoch chosen on (up to
    `max_val`) val images. Each step encodes batch_size x classes texts. Call inside `frozen(model)`."""
    text = PromptedText(model, bank.ds.addresses, n_ctx)
    torch.manual_seed(seed)
    ctx0, how = init_context(text, n_ctx, init, torch.Generator().manual_seed(seed))
    device = model.device
    train_x, train_y = _features(bank, "train", device), bank.labels["train"].to(device)
    keep = _limit(len(bank.image["val"]), max_val, seed)
    val_x, val_y = _features(bank, "val", device)[keep], bank.labels["val"][keep].to(device)
    scale = _logit_scale(model)
    chunk = _cocoop_chunk(text.num_texts)

    def build():
        torch.manual_seed(seed)  # the meta-net's initial weights depend on the seed only
        return CoCoOpPrompt(ctx0, bank.dim).to(device)

    def loss_fn(prompt, idx):
        return F.cross_entropy(prompt.logits(text, train_x[idx], scale, chunk=len(idx)), train_y[idx])

    def val_logits(prompt):
        return prompt.logits(text, val_x, scale, chunk), val_y

    batches, steps = _index_batches(len(train_x), batch_size)
    sel = select_on_val(build, loss_fn, val_logits, batches, steps, _as_grid(lr), epochs, seed, max_steps, progress, "CoCoOp")
    prompt = build()
    prompt.load_state_dict(sel.state)
    return PromptFit(prompt.eval(), text, sel, how)


def run_cocoop(bank, model=None, seed: int = 0, k: int = 5, n_ctx: int = 4, init: str | None = COOP_INIT,
               epochs: int = 2, lr: float | Sequence[float] = TEXT_LRS, batch_size: int = 4,
               max_steps: int | None = None, max_val: int | None = 500, progress: bool = False) -> BaselineResult:
    """CoCoOp (Zhou et al., CVPR 2022): instance-conditional context; towers frozen.

    There is no fixed gallery: every query re-encodes all candidate addresses with its own context, so
    query_ms includes that text encoding (images x classes sequences), unlike CoOp's, and is timed on the one pass
    that ranks the test split (`inference.timed_ranking` with repeats=1: a pass is the whole cost)."""
    _check_inputs(bank, model, "CoCoOp")
    with frozen(model):
        fit = fit_cocoop(bank, model, seed, n_ctx, init, epochs, lr, batch_size, max_steps, max_val, progress)
        scale, chunk = _logit_scale(model), _cocoop_chunk(fit.text.num_texts)
        # What must be kept to answer queries: the learned parameters and the address token ids (re-encoded per query).
        storage = nbytes(*fit.prompt.parameters(), fit.text.tokens)
        chosen = _chosen(fit.selected, n_ctx=n_ctx, init=fit.init, batch_size=batch_size, max_steps=max_steps)
        notes = (f"CoCoOp: {n_ctx} context vectors ({fit.init}) + meta-net {bank.dim}->{max(1, bank.dim // 16)}->"
                 f"{fit.text.width} of the image feature; frozen towers; cached train features, lr grid "
                 f"{_as_grid(lr)} x epochs 1..{epochs} chosen on {'all' if max_val is None else f'<= {max_val}'} val "
                 f"images; query_ms includes encoding every address per query; storage counts address token ids, "
                 f"not a feature gallery.")
        # each block of `chunk` images is one text-encoder call, as in training's val passes
        rank = rank_by(lambda f: (fit.prompt.logits(fit.text, f, scale, chunk) / scale).float(), fit.text.num_texts,
                       chunk)
        return finish("cocoop", bank, rank, k, chosen, storage, notes, queries=_features(bank, "test", model.device),
                      repeats=1)  # re-encodes every address per image: one pass is the cost


# --- MaPLe ---------------------------------------------------------------------------------------------------

def maple_applicable(model) -> str | None:
    """Why MaPLe cannot prompt this model, or None when it can."""
    clip = model.clip
    if not isinstance(clip.visual, open_clip.transformer.VisionTransformer):
        kind = type(getattr(clip.visual, "trunk", clip.visual)).__name__
        return (f"MaPLe couples text prompts into the image transformer's token sequence; this backbone's image tower "
                f"({kind}) is a CNN with no token sequence to prompt. Use CoOp or CoCoOp, which prompt the text only.")
    if model.hf_text or not hasattr(clip, "token_embedding"):
        return "MaPLe's deep text prompts are implemented for open_clip's built-in CLIP text transformer only."
    return None


class PromptedVision:
    """open_clip's ViT image tower with MaPLe's vision prompts, placed as in MaPLe's reference implementation
    (``VisionTransformer_MaPLe.forward``): the first prompt tokens are appended after [CLS, patches] once the
    positional embedding is added (they get none) and *before* ``ln_pre``, which then normalises the whole
    sequence [CLS, patches, prompts]; at the input of each of layers 1..J-1 the prompt tokens in the residual
    stream are replaced by fresh ones (raw coupling outputs, no ln_pre, as in the reference); they are dropped
    before pooling. Patch dropout (identity in eval) applies to [CLS, patches] only. With no prompts this is the
    tower's own forward."""

    def __init__(self, visual: nn.Module):
        self.visual = visual

    def tokens(self, images: torch.Tensor, prompt: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """ln_pre([CLS, patches] + positional embedding, then `prompt` tokens) and the count of non-prompt tokens."""
        v = self.visual
        x = v.conv1(images.to(v.conv1.weight.dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [B, grid*grid, width]
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = v.patch_dropout(torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype))
        n = x.shape[1]
        if prompt is not None:
            x = torch.cat([x, prompt.to(x.dtype).expand(x.shape[0], -1, -1)], dim=1)
        return v.ln_pre(x), n

    def encode(self, images: torch.Tensor, prompts: Sequence[torch.Tensor] = (), normalize: bool = True) -> torch.Tensor:
        v = self.visual
        x, n = self.tokens(images, prompts[0] if len(prompts) else None)

        def replace(i, h):  # deep prompts: layers 1..J-1 (layer 0's prompts went in before ln_pre)
            if 0 < i < len(prompts):
                h = torch.cat([h[:, :n], prompts[i].to(h.dtype).expand(h.shape[0], -1, -1)], 1)
            return h

        x = _run_blocks(v.transformer, x, None, replace if len(prompts) > 1 else None)
        pooled, _ = v._pool(x[:, :n])
        if v.proj is not None:
            pooled = pooled @ v.proj
        return F.normalize(pooled, dim=-1) if normalize else pooled


class MaPLePrompt(nn.Module):
    """MaPLe (Khattak et al. 2023, Sec. 3.2): text prompts P_0..P_{J-1} (P_0 the input context after SOT, the
    rest replacing it at layers 1..J-1) and per-layer linear coupling functions F_i giving vision prompts F_i(P_i)."""

    def __init__(self, ctx: torch.Tensor, depth: int, vision_width: int, generator: torch.Generator):
        super().__init__()
        n_ctx, width = ctx.shape
        self.ctx = nn.Parameter(ctx.clone())
        self.deep = nn.ParameterList(
            [nn.Parameter(torch.randn(n_ctx, width, generator=generator) * 0.02) for _ in range(depth - 1)])
        self.couple = nn.ModuleList([nn.Linear(width, vision_width) for _ in range(depth)])

    def text_prompts(self) -> list[torch.Tensor]:
        return [self.ctx, *self.deep]

    def vision_prompts(self) -> list[torch.Tensor]:
        return [f(p) for f, p in zip(self.couple, self.text_prompts())]

    def text_features(self, text: PromptedText) -> torch.Tensor:
        return text.encode(self.ctx, deep=list(self.deep))

    def image_features(self, vision: PromptedVision, images: torch.Tensor) -> torch.Tensor:
        return vision.encode(images, self.vision_prompts())


def _image_batches(rows: ImageRows | Subset, batch_size: int, gen: torch.Generator | None = None) -> DataLoader:
    """Batches of preprocessed images in the main process (deterministic, and the CPU is shared)."""
    return DataLoader(rows, batch_size=batch_size, shuffle=gen is not None, generator=gen, num_workers=0,
                      drop_last=gen is not None and len(rows) > batch_size)


def _encode_split(prompt: MaPLePrompt, vision: PromptedVision, rows, batch_size: int, device) -> torch.Tensor:
    with torch.no_grad():
        out = [prompt.image_features(vision, x.to(device)).float() for x, _ in _image_batches(rows, batch_size)]
    return torch.cat(out)


def run_maple(bank, model=None, seed: int = 0, k: int = 5, n_ctx: int = 2, depth: int = 9,
              init: str | None = MAPLE_INIT, epochs: int = 2, lr: float | Sequence[float] = MAPLE_LRS,
              batch_size: int = 4, max_steps: int | None = None, max_val: int | None = 500,
              progress: bool = False) -> BaselineResult:
    """MaPLe (Khattak et al., CVPR 2023): coupled deep prompts in the first `depth` layers of both towers of a
    ViT CLIP; towers frozen. Raises NotApplicable for a CNN image tower or a non-CLIP text tower.

    The image side changes, so cached image features cannot be used: train, val (up to `max_val`) and test
    images are encoded here through the prompted ViT (`model.preprocess_val`). lr and epoch chosen on val."""
    if model is None:
        raise ValueError("MaPLe needs the model whose towers it prompts")
    reason = maple_applicable(model)
    if reason:
        raise NotApplicable(reason)
    ds = bank.ds
    frames = {s: ds.split(s) for s in ("train", "val", "test")}
    if not len(frames["train"]) or not len(frames["test"]):
        raise ValueError("MaPLe needs train and test images; a split is empty")
    rows = {s: ImageRows(ds.root, f["image"].tolist(), model.preprocess_val, model.image_size) for s, f in frames.items()}
    labels = {s: torch.as_tensor([ds.address_id(a) for a in f["address"]], dtype=torch.long) for s, f in frames.items()}
    val_rows = Subset(rows["val"], _limit(len(rows["val"]), max_val, seed).tolist())
    val_y = labels["val"][val_rows.indices]
    depth = max(1, min(depth, len(model.clip.transformer.resblocks), len(model.clip.visual.transformer.resblocks)))
    with frozen(model):
        device = model.device
        text = PromptedText(model, ds.addresses, n_ctx)
        vision = PromptedVision(model.clip.visual)
        torch.manual_seed(seed)
        ctx0, how = init_context(text, n_ctx, init, torch.Generator().manual_seed(seed))
        vision_width = model.clip.visual.class_embedding.shape[-1]
        scale = _logit_scale(model)

        def build():
            return MaPLePrompt(ctx0, depth, vision_width, torch.Generator().manual_seed(seed)).to(device)

        def loss_fn(prompt, batch):
            images, idx = batch
            logits = scale * prompt.image_features(vision, images.to(device)) @ prompt.text_features(text).T
            return F.cross_entropy(logits, labels["train"][idx].to(device))

        def val_logits(prompt):
            if not len(val_rows):
                return torch.zeros(0, text.num_texts), val_y
            feats = _encode_split(prompt, vision, val_rows, max(batch_size, 32), device)
            return scale * feats @ prompt.text_features(text).float().T, val_y.to(device)

        steps = len(_image_batches(rows["train"], batch_size, torch.Generator()))
        sel = select_on_val(build, loss_fn, val_logits, lambda gen: _image_batches(rows["train"], batch_size, gen),
                            steps, _as_grid(lr), epochs, seed, max_steps, progress, "MaPLe")
        prompt = build()
        prompt.load_state_dict(sel.state)
        prompt.eval()
        with torch.no_grad():
            gallery = prompt.text_features(text).float()
        storage = nbytes(*prompt.parameters(), gallery)
        chosen = _chosen(sel, n_ctx=n_ctx, depth=depth, init=how, batch_size=batch_size, max_steps=max_steps)
        notes = (f"MaPLe: {n_ctx} prompt tokens ({how}) in the first {depth} layers of the text transformer, linearly "
                 f"coupled to vision prompts at the same depths; frozen towers; images encoded through the prompted "
                 f"ViT (preprocess_val, no augmentation); lr grid {_as_grid(lr)} x epochs 1..{epochs} chosen on "
                 f"{'all' if max_val is None else f'<= {max_val}'} val images.")
        feats = _encode_split(prompt, vision, rows["test"], max(batch_size, 32), device)
        return finish("maple", bank, over_gallery(gallery.to(feats.dtype)), k, chosen, storage, notes, queries=feats)
