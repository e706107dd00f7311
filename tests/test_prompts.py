"""Prompt-learning baselines (CoOp, CoCoOp, MaPLe) on the tiny fixture dataset.

The default backbone (EfficientNet + MiniLM) covers the HF text tower; a tiny ViT CLIP registered here (random
init, 2 layers of width 64, 64 px images) covers open_clip's built-in text tower and MaPLe."""
import copy
import json

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from addressclip.baselines import NotApplicable, get_baseline
from addressclip.baselines import prompts as P
from addressclip.data import ImageRows
from addressclip.datasets.format import read_dataset
from addressclip.features import feature_bank
from addressclip.model import create_model

PHRASE = "a street view at"
TINY_VIT = "addressclip-test-tiny-vit"
TINY_VIT_CFG = {
    "embed_dim": 32, "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices on a shared CPU: one thread avoids oversubscription and is faster here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ds(tiny_dataset):
    return read_dataset(tiny_dataset)


@pytest.fixture(scope="module")
def cnn(ds, tmp_path_factory):
    model = create_model(train_image="proj", train_text="proj")
    return model, feature_bank(model, ds, cache_dir=tmp_path_factory.mktemp("features-cnn"))


@pytest.fixture(scope="module")
def vit(ds, tmp_path_factory):
    cfg = tmp_path_factory.mktemp("configs") / f"{TINY_VIT}.json"
    cfg.write_text(json.dumps(TINY_VIT_CFG))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    model = create_model(TINY_VIT, train_image="proj", train_text="proj")
    return model, feature_bank(model, ds, cache_dir=tmp_path_factory.mktemp("features-vit"))


def snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {n: p.requires_grad for n, p in model.named_parameters()}, model.training)


def assert_unchanged(model, before):
    weights, flags, training = before
    after = model.state_dict()
    assert all(torch.equal(weights[k], after[k]) for k in weights), "a tower weight changed"
    assert flags == {n: p.requires_grad for n, p in model.named_parameters()}, "requires_grad flags not restored"
    assert model.training == training


def accuracy(feats, gallery, labels) -> float:
    return (feats @ gallery.T).argmax(1).eq(labels).float().mean().item()


def assert_valid_ranking(res, ds, k):
    pred = res.result.predictions
    assert len(pred) == len(ds.split("test"))
    assert all(len(t) == k and len(set(t)) == k and set(t) <= set(ds.addresses) for t in pred["topk"])
    assert all(np.all(np.diff(s) <= 1e-6) for s in pred["scores"]), "scores not best first"
    assert all(0 <= v <= 100 for key, v in res.result.quality.items() if key.startswith(("SSA", "SA")))


# --- exactness of the insertion --------------------------------------------------------------------------------

@pytest.mark.parametrize("tower", ["cnn", "vit"])
def test_context_equal_to_phrase_is_the_plain_encoder_on_phrase_plus_address(tower, request, ds):
    model, bank = request.getfixturevalue(tower)
    with P.frozen(model), torch.no_grad():
        text = P.PromptedText(model, ds.addresses, n_ctx=4)
        words = text.phrase_embedding(PHRASE)
        assert words.shape == (4, text.width)
        plain = model.encode_text([f"{PHRASE} {a}" for a in ds.addresses])
        torch.testing.assert_close(text.encode(words), plain, atol=1e-5, rtol=0)
        # per-image contexts (CoCoOp) take the same path
        torch.testing.assert_close(text.encode(words.expand(2, 4, -1))[1], plain, atol=1e-5, rtol=0)
        # and other context vectors give other features: the context is really read
        assert (text.encode(words.flip(0)) - plain).abs().max() > 1e-3
        # no context at all is the plain encoder on the address: the bank's gallery
        empty = P.PromptedText(model, ds.addresses, n_ctx=0)
        torch.testing.assert_close(empty.encode(torch.zeros(0, empty.width)), bank.gallery, atol=1e-5, rtol=0)


def test_length_groups_are_the_cheapest_split_of_the_sorted_lengths():
    rng = np.random.default_rng(0)
    for trial in range(30):
        lengths = rng.integers(3, 12, size=int(rng.integers(1, 25))).tolist()
        n_ctx, pass_tokens = int(rng.integers(0, 5)), int(rng.choice([0, 4, 16, 1000]))
        groups = P.length_groups(lengths, n_ctx, pass_tokens)
        assert sorted(i for rows, _ in groups for i in rows) == list(range(len(lengths)))
        assert all(longest == max(lengths[i] for i in rows) for rows, longest in groups)
        assert [longest for _, longest in groups] == sorted({longest for _, longest in groups})

        def cost(gs):
            return sum(len(rows) * (longest + n_ctx) for rows, longest in gs) + pass_tokens * (len(gs) - 1)

        # brute force: every split of the distinct lengths into runs
        distinct = sorted(set(lengths))
        best = min(
            cost([([i for i, n in enumerate(lengths) if lo <= n <= hi], hi) for lo, hi in
                  zip([distinct[0]] + [distinct[c] for c in cuts], [distinct[c - 1] for c in cuts] + [distinct[-1]])])
            for k in range(len(distinct)) for cuts in map(list, __import__("itertools").combinations(range(1, len(distinct)), k)))
        assert cost(groups) == best
    assert len(P.length_groups([5, 9, 7, 5], 4, pass_tokens=10**6)) == 1
    assert [len(r) for r, _ in P.length_groups([5, 9, 7, 5], 4, pass_tokens=0)] == [2, 1, 1]


@pytest.mark.parametrize("tower", ["cnn", "vit"])
def test_texts_in_length_groups_encode_as_in_one_padded_pass(tower, request, ds):
    """Grouping changes only the padding, which the towers ignore: features and the context's gradient equal one
    pass over every text padded to the longest (float rounding apart), shared and per-image contexts alike."""
    model, _ = request.getfixturevalue(tower)
    # "!" is CLIP's token 0, its padding id too: a text ending in it is still as long as its tokens
    texts = ds.addresses + ["Kaivokatu 1 !", "Kaivokatu !& 1, Helsinki"]
    with P.frozen(model):
        grouped = P.PromptedText(model, texts, n_ctx=4, pass_tokens=0)  # a group per distinct length
        one = P.PromptedText(model, texts, n_ctx=4, pass_tokens=10**9)
        assert len(grouped.groups) > 1 and len(one.groups) == 1, "the fixture's addresses should differ in length"
        for ctx in (grouped.phrase_embedding(PHRASE), torch.randn(2, 4, grouped.width)):
            grads = []
            for text in (grouped, one):
                leaf = ctx.clone().requires_grad_(True)
                feats = text.encode(leaf)
                (feats * torch.linspace(-1, 1, feats.shape[-1])).sum().backward()
                grads.append((feats.detach(), leaf.grad))
            torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-5, rtol=0)
            torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-5, rtol=1e-4)
        # and in the texts' order: the plain encoder on "phrase address"
        with torch.no_grad():
            plain = model.encode_text([f"{PHRASE} {a}" for a in texts])
            torch.testing.assert_close(grouped.encode(grouped.phrase_embedding(PHRASE)), plain, atol=1e-5, rtol=0)


def test_vision_without_prompts_is_the_vit_tower(vit, ds):
    model, _ = vit
    rows = ImageRows(ds.root, ds.split("test")["image"].tolist()[:3], model.preprocess_val)
    images = torch.stack([rows[i][0] for i in range(3)])
    vision = P.PromptedVision(model.clip.visual)
    with P.frozen(model), torch.no_grad():
        torch.testing.assert_close(vision.encode(images), model.encode_image(images), atol=1e-5, rtol=0)
        prompts = [torch.randn(2, 64), torch.randn(2, 64)]
        assert (vision.encode(images, prompts) - model.encode_image(images)).abs().max() > 1e-4


def _maple_reference_forward(visual, images, prompts):
    """MaPLe's reference image forward (VisionTransformer_MaPLe.forward + its deep-prompt residual blocks), written
    out by hand: [CLS, patches] + positional embedding, the first prompts concatenated, ln_pre over the whole
    sequence, sequence-first blocks whose last n_ctx tokens are replaced at layers 1..J-1, ln_post on CLS, proj."""
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat([visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1]), x], dim=1)
    x = x + visual.positional_embedding
    x = torch.cat([x, prompts[0].expand(x.shape[0], -1, -1)], dim=1)
    x = visual.ln_pre(x).permute(1, 0, 2)                       # LND
    n_ctx = prompts[0].shape[0]
    batch_first = getattr(visual.transformer, "batch_first", True)
    for i, block in enumerate(visual.transformer.resblocks):
        if 0 < i < len(prompts):
            x = torch.cat([x[: x.shape[0] - n_ctx], prompts[i].expand(x.shape[1], -1, -1).permute(1, 0, 2)], dim=0)
        x = block(x.permute(1, 0, 2)).permute(1, 0, 2) if batch_first else block(x)
    x = visual.ln_post(x.permute(1, 0, 2)[:, 0, :])
    return F.normalize(x @ visual.proj, dim=-1)


def test_maple_vision_prompts_go_in_before_ln_pre(vit, ds):
    model, _ = vit
    rows = ImageRows(ds.root, ds.split("test")["image"].tolist()[:2], model.preprocess_val)
    images = torch.stack([rows[i][0] for i in range(2)])
    visual = copy.deepcopy(model.clip.visual).eval()
    gen = torch.Generator().manual_seed(1)
    # A fresh LayerNorm (weight 1, bias 0) followed by the blocks' own pre-LN cannot tell where ln_pre ran on the
    # prompt tokens (LN is invariant to a per-token positive affine map); pretrained CLIP's ln_pre is not plain.
    with torch.no_grad():
        visual.ln_pre.weight.copy_(1 + 0.5 * torch.randn(64, generator=gen))
        visual.ln_pre.bias.copy_(torch.randn(64, generator=gen))
    prompts = [torch.randn(2, 64, generator=gen) * 3, torch.randn(2, 64, generator=gen) * 3]
    n_tokens = 1 + (64 // 16) ** 2                                # CLS + 4x4 patches

    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self, ln):
            super().__init__()
            self.ln = ln

        def forward(self, x):
            seen.append(x.detach().clone())
            return self.ln(x)

    ln_pre = visual.ln_pre
    visual.ln_pre = Recorder(ln_pre)
    with torch.no_grad():
        got = P.PromptedVision(visual).encode(images, prompts)
    # ln_pre saw [CLS, patches, prompts]; the prompt tokens entered raw (no positional embedding)
    assert [t.shape[1] for t in seen] == [n_tokens + 2]
    torch.testing.assert_close(seen[0][:, n_tokens:], prompts[0].expand(2, -1, -1), atol=0, rtol=0)
    visual.ln_pre = ln_pre

    with torch.no_grad():
        reference = _maple_reference_forward(visual, images, prompts)
        torch.testing.assert_close(got, reference, atol=1e-5, rtol=0)
        # the old placement (ln_pre first, prompts appended after it) is a different function: the check has teeth
        class AfterLnPre(P.PromptedVision):
            def tokens(self, imgs, prompt=None):
                x, n = super().tokens(imgs)
                return torch.cat([x, prompt.expand(x.shape[0], -1, -1)], 1), n

        assert (AfterLnPre(visual).encode(images, prompts) - reference).abs().max() > 1e-3


# --- CoOp ------------------------------------------------------------------------------------------------------

def test_coop_beats_zero_shot_on_train_and_chance_on_test(cnn, ds):
    model, bank = cnn
    before = snapshot(model)
    hp = dict(lr=(1.0,), epochs=8, batch_size=8)
    with P.frozen(model):
        fit = P.fit_coop(bank, model, **hp)
        with torch.no_grad():
            gallery = fit.prompt.text_features(fit.text)
    zero_shot = accuracy(bank.image["train"], bank.gallery, bank.labels["train"])
    assert accuracy(bank.image["train"], gallery, bank.labels["train"]) >= zero_shot + 0.25
    res = P.run_coop(bank, model, k=5, **hp)
    assert_valid_ranking(res, ds, 5)
    assert res.result.quality["SSA-1"] > 100 / len(ds.addresses)
    assert res.chosen["lr"] == 1.0 and 1 <= res.chosen["epochs"] <= 8 and res.chosen["init"].startswith("word")
    assert res.storage_bytes == 4 * 384 * 4 + len(ds.addresses) * bank.dim * 4  # ctx + gallery, float32
    assert res.query_ms > 0
    assert_unchanged(model, before)


def test_coop_is_deterministic_and_selects_on_val(cnn):
    model, bank = cnn
    with P.frozen(model):
        a = P.fit_coop(bank, model, seed=3, lr=(0.5, 2.0), epochs=2, batch_size=4, max_steps=2)
        b = P.fit_coop(bank, model, seed=3, lr=(0.5, 2.0), epochs=2, batch_size=4, max_steps=2)
    assert torch.equal(a.prompt.ctx, b.prompt.ctx)
    history = a.selected.history
    assert [(h["lr"], h["epoch"]) for h in history] == [(0.5, 1), (2.0, 1)]  # max_steps=2 ends each run in epoch 1
    best = max(history, key=lambda h: (h["val_acc1"], -h["val_loss"]))
    assert a.selected.chosen == {"lr": best["lr"], "epoch": best["epoch"]}


# --- CoCoOp ----------------------------------------------------------------------------------------------------

def test_cocoop_runs_and_ranks(cnn, ds):
    model, bank = cnn
    before = snapshot(model)
    res = get_baseline("cocoop")(bank, model, k=3, lr=(0.5,), epochs=1, batch_size=4, max_steps=3)
    assert res.name == "cocoop"
    assert_valid_ranking(res, ds, 3)
    assert res.chosen["max_steps"] == 3 and res.storage_bytes > 0 and res.query_ms > 0
    assert_unchanged(model, before)


def test_cocoop_context_depends_on_the_image(cnn, ds):
    model, bank = cnn
    prompt = P.CoCoOpPrompt(torch.zeros(4, 384), bank.dim)
    assert prompt.meta_net[0].out_features == bank.dim // 16
    ctx = prompt.context(bank.image["train"][:2].clone())
    assert ctx.shape == (2, 4, 384) and (ctx[0] - ctx[1]).abs().max() > 0


# --- MaPLe -----------------------------------------------------------------------------------------------------

def test_maple_is_not_applicable_to_the_cnn_backbone(cnn):
    model, bank = cnn
    with pytest.raises(NotApplicable, match="CNN"):
        P.run_maple(bank, model)


def test_maple_prompts_reach_both_towers(vit, ds):
    model, _ = vit
    rows = ImageRows(ds.root, ds.split("train")["image"].tolist()[:2], model.preprocess_val)
    images = torch.stack([rows[i][0] for i in range(2)])
    with P.frozen(model):
        text = P.PromptedText(model, ds.addresses, n_ctx=2)
        prompt = P.MaPLePrompt(text.phrase_embedding("street view"), 2, 64, torch.Generator().manual_seed(0))
        logits = prompt.image_features(P.PromptedVision(model.clip.visual), images) @ prompt.text_features(text).T
        logits.logsumexp(1).sum().backward()
    grads = {n: p.grad for n, p in prompt.named_parameters()}
    assert set(grads) == {"ctx", "deep.0", "couple.0.weight", "couple.0.bias", "couple.1.weight", "couple.1.bias"}
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values()), "a prompt or coupling is unused"
    assert all(p.grad is None for p in model.parameters())


def test_maple_runs_end_to_end_on_a_vit(vit, ds):
    model, bank = vit
    before = snapshot(model)
    res = P.run_maple(bank, model, k=5, lr=(0.0035,), epochs=1, batch_size=4, max_steps=3, max_val=6)
    assert res.name == "maple"
    assert_valid_ranking(res, ds, 5)
    assert res.chosen["depth"] == 2 and res.chosen["epochs"] == 1
    prompt_bytes = (2 * 64 + 1 * 2 * 64 + 2 * (64 * 64 + 64)) * 4  # ctx, one deep prompt, two couplings
    assert res.storage_bytes == prompt_bytes + len(ds.addresses) * 32 * 4
    assert_unchanged(model, before)
