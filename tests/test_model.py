import pytest
import torch
import torch.nn.functional as F
from torch import nn
from PIL import Image

from addressclip.freezing import trainable_names
from addressclip.model import create_model


def test_offline_backbone_loads_real_imagenet_weights():
    """The image tower's trunk holds the packaged ImageNet weights: with the packaged classifier the
    scikit-image cat photo is classified as an Egyptian cat (class 285)."""
    skimage = pytest.importorskip("skimage")
    import timm

    from addressclip.model import _effnet_weights_path

    model = create_model()
    full = timm.create_model("efficientnet_lite0").eval()
    full.load_state_dict(model.clip.visual.trunk.state_dict(), strict=False)
    src = torch.load(_effnet_weights_path(), weights_only=True)
    full.classifier.weight.data, full.classifier.bias.data = src["_fc.weight"], src["_fc.bias"]
    x = model.preprocess_val(Image.fromarray(skimage.data.chelsea()).resize((224, 224)))[None]
    assert x.min() < -0.5 and x.max() <= 1.0  # inputs scaled to [-1, 1]
    assert full(x).argmax().item() == 285


def test_text_dedup_and_trimmed_padding_are_exact(default_model):
    m = default_model.eval()
    texts = ["Mannerheimintie & Kaivokatu, Helsinki 00100", "Esplanadi", "Mannerheimintie & Kaivokatu, Helsinki 00100"]
    with torch.no_grad():
        ours = m.encode_text(texts)
        full = torch.nn.functional.normalize(m.clip.encode_text(m.tokenizer(texts)), dim=-1)  # padded to context length
    assert torch.allclose(ours, full, atol=1e-5)
    assert m.tokenize(texts).shape[1] < m.tokenizer(texts).shape[1]


def test_trimmed_padding_exact_for_builtin_clip_text_tower():
    m = create_model("RN50-quickgelu", image_size=64).eval()  # random init, CLIP's own text tower
    texts = ["a photo", "Forbes Avenue & Craig Street, Oakland"]
    with torch.no_grad():
        ours = m.encode_text(texts)
        full = torch.nn.functional.normalize(m.clip.encode_text(m.tokenizer(texts)), dim=-1)
    assert torch.allclose(ours, full, atol=1e-5)


def test_trainable_modes(default_model):
    clip = default_model.clip
    all_img = trainable_names(clip, "image", "all")
    last2 = trainable_names(clip, "image", "last:2")
    proj = trainable_names(clip, "image", "proj")
    assert proj < last2 < all_img
    assert proj == {"visual.head.proj.weight"}
    assert any(n.startswith("visual.trunk.blocks.6") for n in last2)
    assert not any(n.startswith("visual.trunk.blocks.4") for n in last2)
    assert trainable_names(clip, "text", "none") == set()
    assert any("encoder.layer.5" in n for n in trainable_names(clip, "text", "last:1"))
    assert not any("encoder.layer.4" in n for n in trainable_names(clip, "text", "last:1"))
    with pytest.raises(ValueError, match="valid: all, none, proj, last:N"):
        trainable_names(clip, "text", "half")
    with pytest.raises(ValueError, match="6 blocks"):
        trainable_names(clip, "text", "last:9")


def test_frozen_parts_stay_in_eval_mode_and_batchnorm_is_frozen(default_model):
    m = default_model.train()
    assert not m.clip.visual.trunk.blocks[0].training       # frozen block
    assert m.clip.visual.trunk.blocks[6].training           # trainable block
    bns = [x for x in m.clip.visual.modules() if isinstance(x, torch.nn.BatchNorm2d)]
    assert bns and not any(bn.training for bn in bns)
    m.eval()


def test_frozen_text_trunk_cache_is_exact():
    m = create_model(train_text="proj")
    m.train()
    texts = ["Esplanadi & Unioninkatu, Helsinki 00130", "Mikonkatu"]
    first = m.encode_text(texts)
    assert len(m._text_cache) == 2
    again = m.encode_text(texts)
    m.cache_frozen_text = False
    fresh = m.encode_text(texts)
    assert torch.allclose(first, again) and torch.allclose(first, fresh, atol=1e-6)
    again.sum().backward()  # the projection still trains
    assert m.clip.text.proj.weight.grad is not None


def test_bad_names_and_download_tags_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown backbone 'resnet9000'"):
        create_model("resnet9000")
    with pytest.raises(ValueError, match="never downloads"):
        create_model("ViT-B-16-quickgelu", pretrained="openai")
    with pytest.raises(FileNotFoundError, match="not found"):
        create_model("ViT-B-16-quickgelu", pretrained=str(tmp_path / "missing.pt"))


def test_open_clip_backbone_from_local_file(tmp_path):
    """A local weights file (the OpenAI ViT-B/16 route) loads through open_clip: here a small RN50 saved to disk."""
    a = create_model("RN50-quickgelu", image_size=64)
    path = tmp_path / "weights.pt"
    torch.save(a.clip.state_dict(), path)
    b = create_model("RN50-quickgelu", pretrained=str(path), image_size=64)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(a.eval().encode_image(x), b.eval().encode_image(x), atol=1e-6)


@pytest.mark.parametrize("mode", ["last:2", "proj"])
def test_cached_frozen_image_layers_are_exact(mode):
    """Encoding an image and encoding its cached frozen-layer output give the same features, and both equal
    open_clip's own tower (batch norms unfolded) to float rounding."""
    m = create_model(train_image=mode).eval()
    x = torch.rand(3, 3, 128, 128)
    with torch.no_grad():
        direct = m.encode_image(x)
        via_prefix = m.encode_image_after_frozen(m.encode_frozen_image_layers(x))
        open_clips = F.normalize(m.clip.encode_image(x), dim=-1)
    assert torch.equal(direct, via_prefix)  # one path: encode_image runs the frozen layers as the cache does
    assert torch.allclose(direct, open_clips, atol=1e-5)
    assert create_model(train_image="all").frozen_image_blocks() is None


@pytest.mark.parametrize("mode", ["last:2", "proj"])
def test_frozen_image_layers_in_chunks_match_one_pass(mode, monkeypatch):
    """On a CPU the frozen layers run a few images at a time (`CPU_FROZEN_CHUNK`): every image's output, the last
    short chunk's too, equals one pass over the whole batch to float rounding (oneDNN may pick another kernel for
    another batch size: one thread and a chunk of 3 move values of up to 25 by 4e-5; full chunks on two threads gave
    the same bits here, `bench/bench_conv_layout.py --chunk`), and an empty batch gives an empty output."""
    from addressclip import model as model_module

    m = create_model(train_image=mode).eval()
    x = torch.rand(2 * model_module.CPU_FROZEN_CHUNK + 3, 3, 128, 128)
    chunked = m.encode_frozen_image_layers(x)
    monkeypatch.setattr(model_module, "CPU_FROZEN_CHUNK", len(x))
    whole = m.encode_frozen_image_layers(x)
    assert chunked.shape == whole.shape and chunked.is_contiguous()
    assert torch.allclose(chunked, whole, atol=1e-4)
    assert m.encode_frozen_image_layers(x[:0]).shape[0] == 0


def test_a_gradient_reaches_the_images_through_frozen_layers():
    """Features are computed with folded batch norms under no_grad; when a gradient must reach the images (saliency
    maps) the tower runs unfolded, with the same features to rounding."""
    m = create_model(train_image="proj").eval()
    x = torch.rand(1, 3, 128, 128, requires_grad=True)
    with torch.no_grad():
        folded = m.encode_image(x)
    feats = m.encode_image(x)
    feats.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and torch.allclose(feats, folded, atol=1e-5)


def test_frozen_layers_run_with_every_batch_norm_folded():
    m = create_model(train_image="last:1").eval()
    folded = m._folded_frozen_layers()
    norms = [mod for mod in nn.Sequential(*m.frozen_image_layers()).modules() if isinstance(mod, nn.BatchNorm2d)]
    assert len(norms) > 20  # EfficientNet-Lite0's stem and blocks
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in folded.modules())


def test_folded_frozen_layers_follow_the_weights():
    """Loading other weights, or editing one in place, rebuilds the folded copy: never a stale one."""
    m = create_model(train_image="last:1").eval()
    x = torch.rand(2, 3, 128, 128)

    def unfolded():
        with torch.no_grad():
            return nn.Sequential(*m.frozen_image_layers())(x)

    before = m.encode_frozen_image_layers(x)
    with torch.no_grad():
        m.clip.visual.trunk.conv_stem.weight.mul_(1.5)
    edited = m.encode_frozen_image_layers(x)
    assert not torch.allclose(edited, before) and torch.allclose(edited, unfolded(), rtol=1e-4, atol=1e-4)
    state = {k: v.clone() for k, v in m.state_dict().items()}
    state["clip.visual.trunk.bn1.running_var"] *= 4
    m.load_state_dict(state)
    loaded = m.encode_frozen_image_layers(x)
    assert not torch.allclose(loaded, edited) and torch.allclose(loaded, unfolded(), rtol=1e-4, atol=1e-4)


def test_batch_norm_folding_holds_under_autocast_and_inference_mode():
    """The fold's check runs in float64 on the CPU, so bf16 autocast does not turn folding off; weights moved
    inside inference mode (tensors without version counters) still key the folded copy."""
    import warnings

    m = create_model(train_image="last:1").eval()
    x = torch.rand(2, 3, 128, 128)
    with warnings.catch_warnings(), torch.autocast("cpu", dtype=torch.bfloat16):
        warnings.simplefilter("error")
        m.encode_frozen_image_layers(x)
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in m._folded_frozen_layers().modules())
    with torch.inference_mode():
        m.to(torch.float64)
        direct = m.encode_image(x.double())
        open_clips = F.normalize(m.clip.encode_image(x.double()), dim=-1)
    assert direct.dtype == torch.float64 and torch.allclose(direct, open_clips, atol=1e-9)


def test_batch_norm_folding_refuses_a_layer_order_it_cannot_see():
    """A block that registers its convolution before its batch norm but applies them the other way round: the
    probe catches it and the layers run unfolded (with a warning), never wrongly folded."""
    from addressclip.bn_folding import folded_copy

    class NormFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
            self.bn.running_mean.uniform_(-1, 1), self.bn.running_var.uniform_(0.5, 2)

        def forward(self, x):
            return self.conv(self.bn(x))

    block = NormFirst().eval()
    x = torch.randn(2, 3, 8, 8)
    with pytest.warns(RuntimeWarning, match="unfolded"):
        copy_ = folded_copy([block], image_size=8)
    assert any(isinstance(mod, nn.BatchNorm2d) for mod in copy_.modules())
    with torch.no_grad():
        assert torch.equal(copy_(x), block(x))


def test_text_cache_from_disk_is_exact(tmp_path):
    from addressclip.frozen_layers import text_outputs as warm_text_cache

    texts = ["Esplanadi & Unioninkatu, Helsinki 00130", "A street view of a red building.", "Mikonkatu"]
    torch.manual_seed(0)  # same projection in a and c
    a = create_model(train_text="proj").eval()
    with torch.no_grad():
        direct = a.encode_text(texts)
    b = create_model(train_text="proj").eval()
    assert warm_text_cache(b, texts, cache_dir=tmp_path)  # computes and saves
    torch.manual_seed(0)
    c = create_model(train_text="proj").eval()
    assert warm_text_cache(c, texts, cache_dir=tmp_path) and len(list(tmp_path.glob("text-*.pt"))) == 1  # reads
    with torch.no_grad():
        assert torch.allclose(c.encode_text(texts), direct, atol=1e-6)
    assert not warm_text_cache(create_model(train_text="last:1"), texts, cache_dir=tmp_path)  # trunk trains: no cache


def test_offline_backbone_registration_leaves_no_folder(tmp_path, monkeypatch):
    """Registering the offline backbone's config leaves nothing in the temp folder (an atexit cleanup left one
    behind whenever a process was killed: 105 had piled up in /tmp), and open_clip keeps the config, also through
    a later rescan of its config paths."""
    from open_clip import factory

    from addressclip import model as model_module

    name = "effnet-lite0-minilm"
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setattr(model_module, "_registered", set())
    monkeypatch.setattr(factory, "_MODEL_CONFIG_PATHS", list(factory._MODEL_CONFIG_PATHS))
    monkeypatch.delitem(factory._MODEL_CONFIGS, name, raising=False)  # registered afresh by this call, not earlier
    model_module._register_offline_backbone(name)
    assert list(tmp_path.iterdir()) == []
    factory._rescan_model_configs()  # what open_clip does when another config is added later
    assert factory.get_model_config(name)["embed_dim"] > 0
