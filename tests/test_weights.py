"""`pretrained` files in the formats their publishers write: OpenAI's TorchScript archives (fp16 and fp32),
torch.save state dicts, safetensors; and refusals that name what was found and what is accepted."""
from __future__ import annotations

import os
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from addressclip.model import PAPER_BACKBONE, create_model
from addressclip.weights import WeightsFileError, weights_format
from openai_archive import make_openai_archive

TINY = "ViT-Tiny-16-quickgelu"
TEXTS = ["Forbes Avenue & Craig Street, Oakland", "A street view of a brick building with parked cars"]


@pytest.fixture(scope="module")
def tiny_archive(tmp_path_factory):
    return make_openai_archive(TINY, tmp_path_factory.mktemp("weights") / "tiny-openai.pt")


def archive_features(path, images, model):
    """The archive's own encode_image / encode_text, run in fp32 as clip.load(jit=True) does on a CPU."""
    archive = torch.jit.load(str(path), map_location="cpu").float().eval()
    with torch.no_grad():
        return archive.encode_image(images), archive.encode_text(model.tokenizer(TEXTS))


def max_differences(path, arch):
    model = create_model(arch, pretrained=str(path)).eval()
    images = torch.rand(2, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(1))
    want_image, want_text = archive_features(path, images, model)
    with torch.no_grad():
        got_image = model.encode_image(images, normalize=False)
        got_text = model.encode_text(TEXTS, normalize=False)
    return float((got_image - want_image).abs().max()), float((got_text - want_text).abs().max()), model


@pytest.mark.parametrize("fp16", [True, False])
def test_openai_archive_features_equal_the_archives_own(tmp_path, fp16):
    path = make_openai_archive(TINY, tmp_path / "tiny.pt", fp16=fp16)
    assert weights_format(path) == "openai-torchscript"
    stored = torch.jit.load(str(path)).state_dict()
    assert "attn_mask" not in stored and (stored["visual.conv1.weight"].dtype == (torch.float16 if fp16 else torch.float32))
    image_diff, text_diff, model = max_differences(path, TINY)
    assert image_diff < 1e-5 and text_diff < 1e-5, (image_diff, text_diff)
    assert model.clip.visual.conv1.weight.dtype == torch.float32  # trained in fp32 (autocast on a GPU)
    assert torch.equal(model.clip.visual.conv1.weight, stored["visual.conv1.weight"].float())


def test_openai_vit_b16_archive_loads_exactly(tmp_path):
    """The paper's architecture at its own size (224 px), from an fp16 archive made as OpenAI's are."""
    path = make_openai_archive(PAPER_BACKBONE, tmp_path / "ViT-B-16.pt")
    image_diff, text_diff, model = max_differences(path, PAPER_BACKBONE)
    print(f"ViT-B-16 archive -> model: max |image feature diff| {image_diff:.2e}, |text feature diff| {text_diff:.2e}")
    assert model.image_size == 224
    assert image_diff < 1e-4 and text_diff < 1e-4, (image_diff, text_diff)


def test_openai_archive_needs_quickgelu_and_the_same_architecture(tiny_archive):
    with pytest.raises(WeightsFileError, match="QuickGELU.*ViT-B-16-quickgelu"):
        create_model("ViT-B-16", pretrained=str(tiny_archive))
    with pytest.raises(WeightsFileError, match="does not fit backbone 'ViT-B-32-quickgelu'.*other shapes"):
        create_model("ViT-B-32-quickgelu", pretrained=str(tiny_archive))


@pytest.mark.parametrize("layout", ["torch.save", "state_dict key + module. prefix", "safetensors", "addressclip model.pt"])
def test_state_dict_files_load(tmp_path, layout):
    source = create_model(TINY).eval()
    state = source.clip.state_dict()
    path = tmp_path / "weights.bin"
    if layout == "torch.save":
        torch.save(state, path)
    elif layout == "safetensors":
        path = tmp_path / "weights.data"  # recognised by content, not by name
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif layout == "addressclip model.pt":
        torch.save({"model": state, "spec": source.spec.to_dict()}, path)
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    loaded = create_model(TINY, pretrained=str(path)).eval()
    images = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(images), source.encode_image(images))


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['ADDRESSCLIP_PAYLOAD_MARK']}",))


def test_pickled_code_is_never_run(tmp_path, monkeypatch):
    mark = tmp_path / "ran"
    monkeypatch.setenv("ADDRESSCLIP_PAYLOAD_MARK", str(mark))
    path = tmp_path / "evil.pt"
    torch.save({"visual.proj": torch.zeros(1), "extra": _Payload()}, path)
    with pytest.raises(WeightsFileError, match="pickled objects other than tensors.*accepted"):
        create_model(TINY, pretrained=str(path))
    assert not mark.exists()


@pytest.mark.parametrize("content, found", [
    (b"", "an empty file"),
    (b"GIF89a not weights at all", "starting with bytes b'GIF89a n'"),
    ("zip", "neither a TorchScript archive nor a torch.save file"),
])
def test_foreign_files_get_an_error_naming_what_was_found(tmp_path, content, found):
    path = tmp_path / "weights.pt"
    if content == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "hello")
    else:
        path.write_bytes(content)
    with pytest.raises(WeightsFileError) as err:
        create_model(TINY, pretrained=str(path))
    assert found in str(err.value) and "accepted: OpenAI's TorchScript archive" in str(err.value)
