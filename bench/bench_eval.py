"""Evaluation images/s (files decoded, encoded, ranked against every candidate address) against the bare
image-encoder forward on the same images already in memory (the floor).

    .venv/bin/python bench/bench_eval.py --dataset helsinki-synth
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from addressclip.data import ImageRows
from addressclip.datasets import build_dataset, load_dataset
from addressclip.evaluate import evaluate
from addressclip.model import create_model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="helsinki-synth-tiny")
    ap.add_argument("--split", default="test")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--num-workers", type=int, default=1)
    args = ap.parse_args()
    if not Path(args.dataset).exists():
        build_dataset(args.dataset)
    ds = load_dataset(args.dataset)
    model = create_model().eval()
    frame = ds.split(args.split)
    rows = ImageRows(ds.root, frame["image"].tolist(), model.preprocess_val)
    images = torch.stack([rows[i][0] for i in range(len(rows))])
    with torch.inference_mode():
        model.encode_image(images[: args.batch_size])  # warm-up
        start = time.perf_counter()
        for i in range(0, len(images), args.batch_size):
            model.encode_image(images[i : i + args.batch_size])
        bare = len(images) / (time.perf_counter() - start)
    evaluate(model, ds, args.split, batch_size=args.batch_size, num_workers=args.num_workers)  # warm-up
    start = time.perf_counter()
    result = evaluate(model, ds, args.split, batch_size=args.batch_size, num_workers=args.num_workers)
    full = len(images) / (time.perf_counter() - start)
    print(f"{ds.name} {args.split}: {len(images)} images, {result.metrics['candidates']} candidate addresses, "
          f"image size {model.image_size}")
    print(f"bare image encoder {bare:.1f} images/s | evaluate() {full:.1f} images/s | ratio {full / bare:.2f}")


if __name__ == "__main__":
    main()
