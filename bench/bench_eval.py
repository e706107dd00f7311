"""Evaluation images/s (files decoded, encoded, ranked against every candidate address, scored) against the bare
image-encoder forward on the same images already in memory (the floor), paired in each of `--runs` runs.

    flock /tmp/cpu.lock env PYTHONPATH=. .venv/bin/python bench/bench_eval.py --dataset helsinki-synth [--profile] [--decode-thread]
    flock /tmp/cpu.lock env PYTHONPATH=. .venv/bin/python bench/bench_eval.py --photos generate   # 480x640 JPEGs

Each run times the bare encoder, then `evaluate` (the gallery of candidate addresses, the images through the
DataLoader, top-k, metrics); the ratio is reported as the median of the runs with its range, and the parts of
one evaluation are timed apart, to show what limits it. Workers and intra-op threads default to the choice in
`addressclip.threads` (``--num-workers``, ``--threads`` to compare others).

The model is the offline default with every layer trainable unless told otherwise: ``--train-image`` and
``--train-text`` as a run's spec (a frozen text trunk, as in the demo profile's ``proj``, caches each address's
trunk output, so the gallery costs only the projection once warm), ``--backbone`` and ``--image-size`` for the
paper's ViT-B/16 (random weights: the same arithmetic as OpenAI's), ``--limit`` to time the first N images only.

``--photos DIR`` (a folder of JPEGs, or ``generate``: 256 camera-like 480x640 JPEGs as in bench_pipeline.py)
times the image part alone (`inference.encode_images`, what evaluation and prediction run) against the bare
encoder on the same images: photos cost far more to decode than the embedded datasets' 128 px renderings.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from addressclip import threads
from addressclip.data import ADDRESS_TEMPLATE, ImageRows
from addressclip.datasets import build_dataset, load_dataset
from addressclip.evaluate import evaluate, result_from_ranking
from addressclip.inference import collate_readable, encode_images, encode_texts, topk
from addressclip.model import create_model
from addressclip.runs import cpu_model


def bare_rate(model, images: torch.Tensor, batch_size: int) -> float:
    """Images/s of the image encoder alone, on tensors already in memory."""
    with torch.inference_mode():
        start = time.perf_counter()
        for i in range(0, len(images), batch_size):
            model.encode_image(images[i : i + batch_size])
        return len(images) / (time.perf_counter() - start)


def parts(model, ds, split: str, batch_size: int, num_workers: int | None) -> dict[str, float]:
    """Seconds of each part of one evaluation, in `evaluate`'s order."""
    frame = ds.split(split)
    out = {}
    with torch.inference_mode():
        start = time.perf_counter()
        gallery = encode_texts(model, [ADDRESS_TEMPLATE.format(address=a) for a in ds.addresses])  # as evaluate does
        out["gallery"] = time.perf_counter() - start
        rows = ImageRows(ds.root, frame["image"].tolist(), model.preprocess_val, model.image_size, report_errors=True)
        start = time.perf_counter()
        feats, _, _ = encode_images(model, rows, batch_size, num_workers)
        out["images"] = time.perf_counter() - start
        start = time.perf_counter()
        scores, top = topk(feats, gallery, 5)
        out["topk"] = time.perf_counter() - start
        start = time.perf_counter()
        result_from_ranking(ds, split, top.numpy(), scores.numpy())
        out["metrics"] = time.perf_counter() - start
        # what "images" spends besides the encoder: decoding + transforming in this process, then batching
        start = time.perf_counter()
        items = [rows[i] for i in range(len(rows))]
        out["decode alone"] = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(0, len(items), batch_size):
            collate_readable(items[i : i + batch_size])
        out["batching alone"] = time.perf_counter() - start
    return out


def summary(ratios: list[float]) -> dict:
    return {"median": round(statistics.median(ratios), 3), "min": round(min(ratios), 3), "max": round(max(ratios), 3),
            "runs": [round(r, 3) for r in ratios]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="helsinki-synth-tiny")
    ap.add_argument("--split", default="test")
    ap.add_argument("--photos", help="a folder of JPEGs, or 'generate': time the image part on photos instead")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--num-workers", type=int, default=None, help="default: threads.loader_workers")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads; default: torch's (the cores)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--limit", type=int, default=None, help="time the split's first N images only")
    ap.add_argument("--backbone", default=None, help="default: the offline default; e.g. ViT-B-16-quickgelu")
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--train-image", default="all", help="the model spec's train_image (all | none | proj | last:N)")
    ap.add_argument("--train-text", default="all", help="the model spec's train_text (proj: the trunk is cached)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--profile", action="store_true", help="also profile one evaluation: the calls that take its time")
    ap.add_argument("--decode-thread", action="store_true",
                    help="also time the image part decoding in line against a thread that prefetches the next batch")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    spec = {"train_image": args.train_image, "train_text": args.train_text, "image_size": args.image_size,
            **({"backbone": args.backbone} if args.backbone else {})}
    model = create_model(**spec).eval()
    workers = threads.loader_workers(model.device) if args.num_workers is None else args.num_workers
    setting = {"threads": torch.get_num_threads(), "num_workers": workers, "cores": threads.cores(),
               "batch_size": args.batch_size, "image_size": model.image_size, "backbone": model.spec.backbone,
               "train_image": args.train_image, "train_text": args.train_text, "limit": args.limit,
               "cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if args.photos:
        result = bench_photos(model, args, workers)
    else:
        result = bench_dataset(model, args, workers)
    result["setting"] = setting
    print(f"setting: {json.dumps(setting)}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


def bench_dataset(model, args, workers: int) -> dict:
    if not Path(args.dataset).exists():
        build_dataset(args.dataset)  # a finished dataset is reused, never rebuilt
    ds = load_dataset(args.dataset)
    if args.limit is not None:  # the split's first N images, the other splits as they are
        if args.limit < 1:
            raise SystemExit(f"--limit must be at least 1, got {args.limit}")
        rest = ds.samples[ds.samples["split"] != args.split]
        candidates = ds.addresses
        ds = dataclasses.replace(ds, samples=pd.concat([ds.split(args.split).head(args.limit), rest], ignore_index=True),
                                 _address_ids=None)
        if ds.addresses != candidates:  # an address only in the images left out would leave the gallery
            raise SystemExit(f"--limit {args.limit} changes {ds.name}'s candidate addresses; give a larger limit")
    frame = ds.split(args.split)
    rows = ImageRows(ds.root, frame["image"].tolist(), model.preprocess_val, model.image_size)
    images = torch.stack([rows[i][0] for i in range(len(rows))])
    bare_rate(model, images[: args.batch_size], args.batch_size)  # warm-up
    evaluate(model, ds, args.split, batch_size=args.batch_size, num_workers=workers)  # warm-up
    bare, full = [], []
    for run in range(args.runs):
        bare.append(bare_rate(model, images, args.batch_size))
        start = time.perf_counter()
        result = evaluate(model, ds, args.split, batch_size=args.batch_size, num_workers=workers)
        full.append(len(images) / (time.perf_counter() - start))
        print(f"run {run + 1}: bare {bare[-1]:.1f} images/s, evaluate {full[-1]:.1f} images/s, "
              f"ratio {full[-1] / bare[-1]:.3f}", file=sys.stderr)
    split_parts = parts(model, ds, args.split, args.batch_size, workers)
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(evaluate, model, ds, args.split, batch_size=args.batch_size, num_workers=workers)
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(12)
    threaded = decode_thread_ratios(model, rows, images, args) if args.decode_thread else None
    ratio = summary([f / b for f, b in zip(full, bare)])
    print(f"{ds.name} {args.split}: {len(images)} images, {result.metrics['candidates']} candidate addresses, "
          f"image size {model.image_size}")
    print(f"bare image encoder {statistics.median(bare):.1f} images/s | evaluate() {statistics.median(full):.1f} "
          f"images/s | ratio {ratio['median']:.3f} (median of {args.runs}; {ratio['min']:.3f}-{ratio['max']:.3f})")
    print("one evaluation, seconds: " + ", ".join(f"{k} {v:.3f}" for k, v in split_parts.items())
          + f" | bare encoder alone {len(images) / statistics.median(bare):.3f}")
    return {"dataset": ds.name, "split": args.split, "images": len(images),
            "candidates": result.metrics["candidates"], "bare_per_s": round(statistics.median(bare), 1),
            "evaluate_per_s": round(statistics.median(full), 1), "ratio": ratio,
            "parts_seconds": {k: round(v, 3) for k, v in split_parts.items()}, "decode_thread": threaded}


def decode_thread_ratios(model, rows, images: torch.Tensor, args) -> dict:
    """The image part (decode, batch, encode) against the bare encoder, decoding in line between the encoder's
    batches (what `encode_images` does on a CPU) and in a thread that decodes the next batch meanwhile."""
    import queue
    import threading

    from torch.utils.data import DataLoader

    def batches(threaded: bool):
        loader = DataLoader(rows, batch_size=args.batch_size, collate_fn=collate_readable, num_workers=0)  # CPU's choice
        if not threaded:
            yield from loader
            return
        ready, end = queue.Queue(2), object()

        def produce():
            try:
                for batch in loader:
                    ready.put(batch)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
                ready.put(exc)
            finally:
                ready.put(end)

        threading.Thread(target=produce, daemon=True).start()
        while (batch := ready.get()) is not end:
            if isinstance(batch, BaseException):
                raise batch
            yield batch

    def seconds(threaded: bool) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for batch, _, _ in batches(threaded):
                model.encode_image(batch)
        return time.perf_counter() - start

    seconds(True)  # warm-up
    ratios = {"in line": [], "thread": []}
    for _ in range(args.runs):
        for name, threaded in (("in line", False), ("thread", True)):
            rate = bare_rate(model, images, args.batch_size)
            ratios[name].append(len(images) / seconds(threaded) / rate)
    out = {name: summary(r) for name, r in ratios.items()}
    print("image part / bare encoder: " + ", ".join(f"{name} {v['median']:.3f} ({v['min']:.3f}-{v['max']:.3f})"
                                                     for name, v in out.items()))
    return out


def bench_photos(model, args, workers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-eval-photos-") as tmp:
        if args.photos == "generate":
            sys.path.insert(0, str(Path(__file__).parent))
            from bench_pipeline import write_photos

            paths = write_photos(Path(tmp), (640, 480), 256)
        else:
            paths = sorted(p for p in Path(args.photos).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
        rows = ImageRows(None, paths, model.preprocess_val, model.image_size)
        images = torch.stack([rows[i][0] for i in range(len(rows))])
        bare_rate(model, images[: args.batch_size], args.batch_size)  # warm-up
        encode_images(model, rows, args.batch_size, workers)  # warm-up
        bare, full = [], []
        for run in range(args.runs):
            bare.append(bare_rate(model, images, args.batch_size))
            start = time.perf_counter()
            encode_images(model, rows, args.batch_size, workers)
            full.append(len(images) / (time.perf_counter() - start))
            print(f"run {run + 1}: bare {bare[-1]:.1f} images/s, encode_images {full[-1]:.1f} images/s, "
                  f"ratio {full[-1] / bare[-1]:.3f}", file=sys.stderr)
        start = time.perf_counter()
        for i in range(len(rows)):
            rows[i]
        decode_ms = 1000 * (time.perf_counter() - start) / len(rows)
    ratio = summary([f / b for f, b in zip(full, bare)])
    print(f"{len(paths)} photos ({args.photos}), decoded and transformed in {decode_ms:.2f} ms each in this process")
    print(f"bare image encoder {statistics.median(bare):.1f} images/s | encode_images() {statistics.median(full):.1f} "
          f"images/s | ratio {ratio['median']:.3f} (median of {args.runs}; {ratio['min']:.3f}-{ratio['max']:.3f})")
    return {"photos": args.photos, "images": len(paths), "decode_ms": round(decode_ms, 3),
            "bare_per_s": round(statistics.median(bare), 1), "encode_images_per_s": round(statistics.median(full), 1),
            "ratio": ratio}


if __name__ == "__main__":
    main()
