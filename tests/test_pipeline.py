"""The image pipeline: the fast transform gives open_clip's tensor, the one decoder skips no step it needs."""
from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from addressclip.data import NormalizedTensor, ResizeCropNormalize, fast_transform, open_image, to_rgb


def photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """Noise with some smooth structure: rounding differences of a resize show up on it."""
    rng = np.random.default_rng(seed)
    smooth = np.kron(rng.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3)), np.ones((8, 8, 1)))[:h, :w]
    return Image.fromarray(np.clip(smooth + rng.normal(0, 20, size=(h, w, 3)), 0, 255).astype(np.uint8), "RGB")


@pytest.mark.parametrize("mode", ["shortest", "squash"])
@pytest.mark.parametrize("size", [(128, 128), (64, 64), (100, 90), (90, 130)])
def test_same_tensor_as_open_clip_without_shrinking(mode, size):
    """An image at the model's size (the embedded datasets) or smaller (the tiny datasets' 64 px): bit for bit."""
    slow = open_clip.image_transform(128, is_train=False, mean=(0.5,) * 3, std=(0.5,) * 3, resize_mode=mode)
    fast = fast_transform(slow)
    assert isinstance(fast, ResizeCropNormalize)
    im = photo(*size)
    assert torch.equal(fast(im), slow(im))


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (512, 512), (320, 240), (300, 500)])
def test_shrinking_differs_from_pillow_by_rounding_only(size):
    slow = open_clip.image_transform(224, is_train=False)  # OpenAI mean/std, as ViT-B/16
    im = photo(*size, seed=size[0])
    a, b = fast_transform(slow)(im), slow(im)
    assert a.shape == b.shape == (3, 224, 224) and a.dtype == b.dtype
    levels = ((a - b).abs() * torch.tensor(open_clip.OPENAI_DATASET_STD)[:, None, None] * 255).round()
    assert levels.max() <= 2 and (levels > 0).float().mean() < 0.01


def test_training_transform_keeps_its_head_and_ends_bit_identical():
    slow = open_clip.image_transform(96, is_train=True, mean=(0.5,) * 3, std=(0.5,) * 3)
    fast = fast_transform(slow)
    assert isinstance(fast.transforms[-1], NormalizedTensor)
    im = photo(150, 120)
    torch.manual_seed(3)
    a = fast(im)
    torch.manual_seed(3)
    assert torch.equal(a, slow(im))  # same random crop, same tensor


def test_other_inputs_and_transforms_fall_back():
    slow = open_clip.image_transform(64, is_train=False)
    fast = fast_transform(slow)
    for im in (photo(80, 70).convert("L"), photo(80, 70).convert("P"), photo(64, 64).convert("RGBA")):
        assert torch.equal(fast(im), slow(im)), im.mode  # Pillow resizes palette images differently: its own path
    tensor = torch.rand(3, 64, 64)
    assert torch.equal(fast.tail(tensor), slow.transforms[-1](tensor))  # a tensor skips ToTensor, as open_clip's
    for other in (np.asarray, lambda image: torch.empty(0)):
        assert fast_transform(other) is other


def test_open_image_turns_by_exif_and_never_returns_the_callers_image(tmp_path):
    im = photo(40, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    im.save(tmp_path / "turned.jpg", quality=95, exif=exif.tobytes())
    assert open_image(tmp_path / "turned.jpg").size == (30, 40)
    assert open_image(tmp_path / "turned.jpg", size_hint=16).size == (30, 40)  # draft decoding turns it too
    assert to_rgb(im) is not im and open_image(im) is not im
    assert np.array_equal(np.asarray(to_rgb(im)), np.asarray(im))


def test_loader_workers_chosen_in_threads(monkeypatch):
    from addressclip import threads
    from addressclip.errors import UserError

    monkeypatch.delenv(threads.WORKERS_ENV, raising=False)
    monkeypatch.setattr(threads, "cores", lambda: 4)
    assert threads.loader_workers("cpu") == 0  # the encoder needs every core: decode in the process
    assert threads.loader_workers("cuda:0") == 3  # the GPU encodes: every core but the main process's decodes
    assert threads.loader_workers("cpu", decode_only=True) == 4
    assert threads.loader_options("cpu") == {"num_workers": 0, "pin_memory": False}
    assert threads.loader_options("cuda", num_workers=2) == {"num_workers": 2, "pin_memory": True}
    assert threads.loader_workers("cuda", batches=2) == 2  # never more workers than batches
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun, two ranks on this node: two cores each
    assert threads.loader_workers("cuda") == 1 and threads.loader_workers("cpu", decode_only=True) == 2
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    with threads.intra_op_threads(1):  # a sweep's job: one core of its own, so no worker processes
        assert threads.loader_workers("cuda") == threads.loader_workers("cpu", decode_only=True) == 0
    assert threads.loader_workers("cuda") == 3  # restored after the block
    monkeypatch.setenv(threads.WORKERS_ENV, "2")
    assert threads.loader_workers("cpu") == threads.loader_workers("cuda") == 2
    for bad in ("-1", "two"):
        monkeypatch.setenv(threads.WORKERS_ENV, bad)
        with pytest.raises(UserError, match="ADDRESSCLIP_WORKERS must be a whole number >= 0"):
            threads.loader_workers("cpu")


def test_train_config_num_workers_defaults_to_threads():
    from addressclip.config import TrainConfig
    from addressclip.errors import UserError

    assert TrainConfig().num_workers is None
    with pytest.raises(UserError, match="num_workers must be >= 0"):
        TrainConfig(num_workers=-1)


def test_bad_workers_setting_refused_when_the_config_is_made(monkeypatch):
    from addressclip.config import TrainConfig
    from addressclip.errors import UserError

    monkeypatch.setenv("ADDRESSCLIP_WORKERS", "many")
    with pytest.raises(UserError, match="ADDRESSCLIP_WORKERS must be a whole number >= 0, got 'many'"):
        TrainConfig()
    assert TrainConfig(num_workers=0).num_workers == 0  # an explicit count does not read it


def test_image_check_rows_pickle_for_spawned_workers(tmp_path):
    """Workers started by spawn (macOS, or inside a sweep's process) receive the dataset pickled."""
    import pickle

    from addressclip import image_check
    from addressclip.data import ImageRows

    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    rows = pickle.loads(pickle.dumps(ImageRows(tmp_path, ["a.jpg"], image_check._nothing, None, report_errors=True)))
    assert rows[0][0].numel() == 0
