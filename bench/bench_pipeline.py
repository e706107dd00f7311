"""Images decoded and transformed per second per CPU core: plain Pillow + open_clip's transform against ours.

    .venv/bin/python bench/bench_pipeline.py            # table
    .venv/bin/python bench/bench_pipeline.py --json out.json

One process, one intra-op thread, no DataLoader workers: the figure is what one core gives, so N workers give
about N times it. Two pipelines on the same files, to the same [3, 224, 224] float tensor:

- plain: ``Image.open(p).convert("RGB")`` then ``open_clip.image_transform(224, is_train=False)`` (OpenAI's
  mean/std, as ViT-B/16 uses): what a CLIP data loader does by default;
- ours: ``data.ImageRows.__getitem__`` with the model's size hint and ``model.preprocess_val``, exactly what the
  training, evaluation and prediction loaders run in their workers.

The inputs are generated JPEGs at the real datasets' sizes (Pitts 480x640, SF-XL 512x512), made like camera
photos so that decoding costs what it costs on street photos: texture with about the spectrum of natural
images, a smooth sky, hard-edged facades with windows and sensor noise (`camera_like`), saved at quality 90 with
4:2:0 chroma subsampling; every fourth file carries EXIF orientation 6 (a phone held upright: ours turns it,
plain ignores it, so ours does more work there) and every fourth orientation 1.
Their bits per pixel are printed next to real photos re-saved the same way (sklearn's and matplotlib's sample
photos, when installed), to show the entropy is realistic: at these sizes decoding is mostly entropy decoding,
so the bits per pixel set its cost. Each figure is the median of `--repeats` passes (the two pipelines take
turns), the ratio the median of the repeats' ratios.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SIZES = {"pitts 480x640": (640, 480), "sf-xl 512x512": (512, 512)}  # (width, height)
EXIF_ORIENTATION = 0x0112


def camera_like(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """An RGB street-like picture with the statistics of a photo: texture with a 1/f^1.25 amplitude spectrum
    (natural images have about 1/f; shared by the channels, with weaker colour), a smooth sky above a horizon,
    facades with hard edges and rows of windows, and per-pixel sensor noise. The texture's strength is set so that
    a file has about as many bits per pixel as real photos re-saved the same way (printed by the benchmark)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0

    def pink():
        spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f**1.25
        field = np.fft.irfft2(spectrum, s=(height, width))
        return (field - field.mean()) / field.std()

    luma = 40 * pink()
    img = np.stack([luma + 12 * pink() for _ in range(3)], axis=-1) + rng.uniform(80, 150, size=3)
    horizon = int(height * rng.uniform(0.25, 0.45))
    sky = np.linspace(1, 0.7, horizon)[:, None, None] * rng.uniform(170, 240, size=3)
    img[:horizon] = sky + 0.15 * (img[:horizon] - 115)
    for _ in range(rng.integers(4, 9)):  # facades: half flat colour, sharp outline, a grid of darker windows
        x0, w = int(rng.integers(0, width - 40)), int(rng.integers(40, width // 2))
        top, bottom = int(rng.integers(0, horizon)), int(rng.integers(height // 2, height * 3 // 4))
        img[top:bottom, x0 : x0 + w] = 0.5 * img[top:bottom, x0 : x0 + w] + 0.5 * rng.uniform(40, 220, size=3)
        step = int(rng.integers(12, 28))
        for wy in range(top + 4, bottom - 8, step):
            for wx in range(x0 + 4, min(x0 + w, width) - 6, step):
                img[wy : wy + step // 2, wx : wx + step // 3] *= 0.55
    img += rng.normal(0, 2.0, size=img.shape)  # sensor noise
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def write_photos(folder: Path, size: tuple[int, int], count: int, seed: int = 0) -> list[Path]:
    """`count` camera-like JPEGs of `size` (width, height) in `folder`, quality 90, 4:2:0."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        im = camera_like(*size, rng)
        exif = Image.Exif()
        if i % 4 == 1:
            exif[EXIF_ORIENTATION] = 6
        elif i % 4 == 3:
            exif[EXIF_ORIENTATION] = 1
        path = folder / f"photo-{size[0]}x{size[1]}-{i:03d}.jpg"
        im.save(path, "JPEG", quality=90, subsampling=2, exif=exif.tobytes() if len(exif) else b"")
        paths.append(path)
    return paths


def bits_per_pixel(paths: list[Path]) -> float:
    pixels = sum(np.prod(Image.open(p).size) for p in paths)
    return 8 * sum(p.stat().st_size for p in paths) / pixels


def reference_photos_bpp() -> dict[str, float]:
    """Bits per pixel of the real sample photos that ship with installed packages, re-saved at quality 90, 4:2:0."""
    import importlib.util
    import io

    found = {}
    for package, rel in (("sklearn", "datasets/images/china.jpg"), ("sklearn", "datasets/images/flower.jpg"),
                         ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg")):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        path = Path(list(spec.submodule_search_locations)[0]) / rel
        if path.exists():
            im = Image.open(path).convert("RGB")
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=90, subsampling=2)
            found[path.name] = 8 * buf.tell() / (im.size[0] * im.size[1])
    return found


def rates(pipelines: dict, count: int, repeats: int) -> dict[str, list[float]]:
    """{name: images/s of each pass} of each `pipelines[name](i)` over the `count` files, after one warm-up pass.
    The pipelines take turns within each repeat, so that a change in the machine's load touches both alike."""
    for fn in pipelines.values():
        for i in range(count):
            fn(i)
    out = {name: [] for name in pipelines}
    for _ in range(repeats):
        for name, fn in pipelines.items():
            start = time.perf_counter()
            for i in range(count):
                fn(i)
            out[name].append(count / (time.perf_counter() - start))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="ViT-B-16-quickgelu", help="the model whose transform 'ours' uses")
    ap.add_argument("--images", type=int, default=48, help="files per size")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    import open_clip

    from addressclip.data import ImageRows
    from addressclip.model import create_model

    torch.set_num_threads(1)  # per core: one thread, no workers
    model = create_model(args.backbone)
    size = model.image_size
    plain_transform = open_clip.image_transform(size, is_train=False)  # OpenAI mean/std, bicubic, shortest side
    results = {"backbone": args.backbone, "image_size": size, "repeats": args.repeats, "torch_threads": 1,
               "reference_photos_bpp": reference_photos_bpp(), "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        for name, wh in SIZES.items():
            paths = write_photos(Path(tmp), wh, args.images)
            rows = ImageRows(None, paths, model.preprocess_val, model.image_size)

            def plain(i):
                return plain_transform(Image.open(paths[i]).convert("RGB"))

            def ours(i):
                return rows[i][0]

            assert plain(0).shape == ours(0).shape == (3, size, size)
            passes = rates({"plain": plain, "ours": ours}, len(paths), args.repeats)
            ratios = [o / p for o, p in zip(passes["ours"], passes["plain"])]  # each repeat's pair
            results["sizes"][name] = {
                "files": len(paths), "kb_per_file": round(sum(x.stat().st_size for x in paths) / len(paths) / 1024, 1),
                "bits_per_pixel": round(bits_per_pixel(paths), 2),
                "plain_per_s": round(statistics.median(passes["plain"]), 1),
                "ours_per_s": round(statistics.median(passes["ours"]), 1),
                "speedup": round(statistics.median(ratios), 2),
                "speedup_range": [round(min(ratios), 2), round(max(ratios), 2)],
                "plain_passes": [round(x, 1) for x in passes["plain"]], "ours_passes": [round(x, 1) for x in passes["ours"]]}
    refs = ", ".join(f"{k} {v:.2f}" for k, v in results["reference_photos_bpp"].items()) or "none installed"
    print(f"images/s per core (1 thread, no workers), to [3, {size}, {size}] for {args.backbone}; "
          f"median of {args.repeats} passes")
    print(f"real photos re-saved at q90 4:2:0, bits/pixel: {refs}")
    print(f"{'input':<15} {'KB/file':>8} {'bits/px':>8} {'plain/s':>9} {'ours/s':>9} {'ours/plain':>11} {'(range)':>12}")
    for name, r in results["sizes"].items():
        lo, hi = r["speedup_range"]
        print(f"{name:<15} {r['kb_per_file']:>8} {r['bits_per_pixel']:>8} {r['plain_per_s']:>9} {r['ours_per_s']:>9} "
              f"{r['speedup']:>10}x {f'{lo}-{hi}x':>12}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
