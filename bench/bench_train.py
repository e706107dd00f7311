"""Training images/s of our step against a reference step of identical maths written the way open_clip's
training step treats such a model: every text of every sample tokenised to the context length and encoded,
no de-duplication, no caching.

    .venv/bin/python bench/bench_train.py --dataset helsinki-synth --batch-size 64 --steps 8

Both steps use the same model weights, trainable parameters, batch and losses; the first batch's losses
are checked equal (to 1e-5) before timing. A third figure is our step as the training loop runs it from the
second epoch on: the frozen image layers' outputs come from the cache (frozen_layers.py), computed once per
image and weights (that one-off cost, the same as one forward pass of those layers, is reported apart).
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from addressclip.data import SplitTable
from addressclip.datasets import build_dataset, load_dataset
from addressclip.losses import AddressCLIPLoss
from addressclip.model import count_parameters, create_model
from addressclip.train import training_step


def reference_step(model, loss_fn, images, idx, table):
    rows = idx.tolist()
    clip = model.clip
    image = F.normalize(clip.encode_image(images), dim=-1)
    addr = F.normalize(clip.encode_text(model.tokenizer([table.address_texts[i] for i in rows])), dim=-1)
    cap = F.normalize(clip.encode_text(model.tokenizer([table.caption_texts[i] for i in rows])), dim=-1)
    return loss_fn(image, clip.logit_scale, addr, cap, table.address_ids[idx], table.coords[idx])


def time_steps(step_fn, model, loss_fn, batches, table, warmup=1, **kw):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5, betas=(0.9, 0.98))
    model.train()
    for i, (images, idx) in enumerate(batches[:warmup] + batches):
        if i == warmup:
            start = time.perf_counter()
        loss = sum(step_fn(model, loss_fn, images, idx, table, **kw).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    n = sum(len(idx) for _, idx in batches)
    return n / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="helsinki-synth-tiny")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--train-image", default="last:1")
    ap.add_argument("--train-text", default="proj")
    args = ap.parse_args()
    if not Path(args.dataset).exists():
        build_dataset(args.dataset)
    ds = load_dataset(args.dataset)
    torch.manual_seed(0)
    ours = create_model(train_image=args.train_image, train_text=args.train_text)
    ref = copy.deepcopy(ours)
    ref.cache_frozen_text = False
    table = SplitTable.from_dataset(ds, "train")
    rows = table.rows(ours.preprocess_val)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))
    batches = []
    for s in range(args.steps):
        idx = order[s * args.batch_size : (s + 1) * args.batch_size]
        batches.append((torch.stack([rows[i][0] for i in idx.tolist()]), idx))
    loss_fn = AddressCLIPLoss()

    ours.eval(); ref.eval()  # compare losses without dropout noise
    with torch.no_grad():
        a = training_step(ours, loss_fn, *batches[0], table)
        b = reference_step(ref, loss_fn, *batches[0], table)
    diff = max(abs(float(a[k]) - float(b[k])) for k in a)
    assert diff < 1e-5, f"losses differ by {diff}"
    ours.clear_text_cache()

    print(f"dataset {args.dataset}, batch {args.batch_size}, {args.steps} timed steps, image size {ours.image_size}, "
          f"trainable image={args.train_image} text={args.train_text}: {count_parameters(ours)}")
    print(f"max loss difference on the first batch: {diff:.2e}")
    r = time_steps(reference_step, ref, loss_fn, batches, table)
    o = time_steps(training_step, ours, loss_fn, batches, table)
    print(f"reference (open_clip-style) {r:.1f} images/s | ours {o:.1f} images/s | ratio {o / r:.2f}x")
    if ours.frozen_image_blocks() is not None:
        # the training loop's steady state: frozen image layers from the cache, indexed by row
        n = args.batch_size * args.steps
        ours.eval()
        start = time.perf_counter()
        frozen = torch.zeros((len(rows),) + ours.encode_frozen_image_layers(batches[0][0][:1]).shape[1:])
        for images, idx in batches:
            frozen[idx] = ours.encode_frozen_image_layers(images)
        once = n / (time.perf_counter() - start)
        c = time_steps(training_step, ours, loss_fn, [(None, idx) for _, idx in batches], table, frozen=frozen)
        print(f"ours with cached frozen image layers {c:.1f} images/s | ratio {c / r:.2f}x "
              f"(one-off caching pass {once:.1f} images/s)")


if __name__ == "__main__":
    main()
