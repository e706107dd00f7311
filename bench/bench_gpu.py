"""Throughput and peak memory of the paper's training step on one GPU (one process of the paper's 8).

The step is the one the training loop runs (addressclip.train): OpenAI CLIP ViT-B/16 (random init: speed and
memory do not depend on the weights), 224 px, every layer trained, bf16 autocast on CUDA, Adam with the paper's
settings (`make_optimizer` on a default `TrainConfig`), the three AddressCLIP losses weighted 1 / 0.2 / 0.8
through `training_step`, the backward pass, the optimiser step and the logit-scale clamp, and reading the losses
back to the host as the loop does every step. The input is synthetic: random images already on the device (no
decoding or transfer is timed), a table of a few hundred distinct address strings, random captions built with
the training caption template, and random UTM coordinates. Texts are tokenised on the host inside the step, as
in training.

    .venv/bin/python bench/bench_gpu.py                                   # cuda if present: ViT-B-16, batch 32
    .venv/bin/python bench/bench_gpu.py --sweep 32,64,128,256 --json outputs/bench_gpu.json
    .venv/bin/python bench/bench_gpu.py --device cpu --backbone ViT-S-32-alt --image-size 64 --batch-size 4

images/s is per process (per GPU). On CPU it runs in fp32 without autocast, so a test can exercise the script;
CPU figures say nothing about GPU throughput.
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from addressclip.config import TrainConfig
from addressclip.data import CAPTION_TEMPLATE, SplitTable
from addressclip.losses import AddressCLIPLoss
from addressclip.model import count_parameters, create_model
from addressclip.train import LOGIT_SCALE_MAX, make_optimizer, training_step

PAPER_WEIGHTS = {"address": 1.0, "caption": 0.2, "geography": 0.8}
PAPER_GLOBAL_BATCH = 256
WORDS = ("a street view of the building with cars parked on road red brick white house tree sidewalk corner shop "
         "church bridge river sign traffic light parking lot fence stairs glass tower old new small large two three "
         "people walking bus stop hill green grey blue").split()
STREETS = ("Liberty Avenue", "Smithfield Street", "Forbes Avenue", "Fifth Avenue", "Penn Avenue", "Grant Street",
           "Carson Street", "Butler Street", "Murray Avenue", "Baum Boulevard", "Centre Avenue", "Wood Street")
AREAS = ("Downtown", "Oakland", "Shadyside", "Squirrel Hill", "Lawrenceville", "South Side", "Strip District")


def synthetic_table(rows: int, addresses: int, seed: int = 0) -> SplitTable:
    """What `training_step` reads from a split: per-row address and caption texts, address ids, UTM coordinates.
    Rows of one address lie within ~30 m of its centre, as the views of one street segment do."""
    rng = np.random.default_rng(seed)
    names = [f"{STREETS[i % len(STREETS)]} {100 + 7 * (i // len(STREETS))}, {AREAS[i % len(AREAS)]}, Pittsburgh, PA"
             for i in range(addresses)]
    ids = rng.permutation(np.arange(rows) % addresses)
    centres = np.column_stack([rng.uniform(583000, 590000, addresses), rng.uniform(4474000, 4481000, addresses)])
    coords = centres[ids] + rng.normal(0, 30, (rows, 2))
    captions = [" ".join(rng.choice(WORDS, size=int(rng.integers(10, 25)))) for _ in range(rows)]
    address_texts = [names[i] for i in ids]
    caption_texts = [CAPTION_TEMPLATE.format(caption=c, address=a) for c, a in zip(captions, address_texts)]
    return SplitTable(pd.DataFrame({"address": address_texts}), [f"synthetic/{i}.jpg" for i in range(rows)],
                      address_texts, caption_texts, torch.as_tensor(ids, dtype=torch.long),
                      torch.as_tensor(coords, dtype=torch.float64))


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def measure(model, loss_fn, optimizer, table, batch_size: int, image_size: int, steps: int, warmup: int,
            device: torch.device, amp: bool, seed: int = 0) -> dict:
    """`warmup` untimed steps, then `steps` timed ones; peak memory over all of them."""
    cuda = device.type == "cuda"
    gen = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(len(table.paths), generator=gen) for _ in range(
        -(-(warmup + steps) * batch_size // len(table.paths)))])
    batches = order[: (warmup + steps) * batch_size].view(warmup + steps, batch_size)
    # two batches of images, alternated: already on the device, as after a prefetching loader
    images = torch.randn((2, batch_size, 3, image_size, image_size), device=device,
                         generator=torch.Generator(device).manual_seed(seed))
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    last = {}
    for i, idx in enumerate(batches):
        if i == warmup:
            if cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            losses = training_step(model, loss_fn, images[i % 2], idx, table)
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, LOGIT_SCALE_MAX)
        last = {k: float(v.detach()) for k, v in {**losses, "loss": total}.items()}  # the loop's per-step read-back
    if cuda:
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    if not all(np.isfinite(list(last.values()))):
        raise RuntimeError(f"non-finite loss at batch {batch_size}: {last}")
    out = {"batch_size": batch_size, "images_per_s": round(steps * batch_size / elapsed, 2),
           "step_ms": round(1000 * elapsed / steps, 2), "timed_steps": steps, "warmup_steps": warmup,
           "last_losses": {k: round(v, 5) for k, v in last.items()}}
    if cuda:
        peak = torch.cuda.max_memory_allocated(device)
        out.update(peak_memory_bytes=peak, peak_memory_gib=round(peak / 2**30, 3),
                   peak_reserved_gib=round(torch.cuda.max_memory_reserved(device) / 2**30, 3))
    else:
        out.update(peak_memory_bytes=None, peak_memory_gib=None)
    return out


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backbone", default="ViT-B-16-quickgelu")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=PAPER_GLOBAL_BATCH // 8, help="per-GPU batch (paper: 256 / 8)")
    ap.add_argument("--sweep", default="", help="further per-GPU batch sizes, comma-separated (e.g. 64,128,256)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per batch size (at least 1)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (allocator, cuDNN/cuBLAS autotuning)")
    ap.add_argument("--addresses", type=int, default=300, help="distinct address strings in the synthetic table")
    ap.add_argument("--rows", type=int, default=8192, help="rows of the synthetic table")
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast (CUDA only)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON here")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit(f"--device {args.device}: CUDA is not available here (use --device cpu)")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)  # TF32 and other backend flags stay at torch's defaults, as in training
    cuda = device.type == "cuda"
    amp = args.amp and cuda
    sizes = [args.batch_size] + [int(b) for b in args.sweep.split(",") if b.strip() and int(b) != args.batch_size]
    if args.steps < 1 or args.warmup < 0:
        sys.exit("--steps must be at least 1 and --warmup at least 0")
    if min(sizes) < 2:
        sys.exit("batch sizes must be at least 2 (contrastive losses need negatives)")
    if args.rows < max(sizes):
        sys.exit(f"--rows {args.rows} is smaller than the largest batch {max(sizes)}")

    cfg = TrainConfig(backbone=args.backbone, image_size=args.image_size, train_image="all", train_text="all",
                      device=str(device))
    assert cfg.loss_weights == PAPER_WEIGHTS, cfg.loss_weights
    torch.manual_seed(0)
    model = create_model(cfg.backbone, None, cfg.image_size, cfg.train_image, cfg.train_text, device=device)
    optimizer = make_optimizer(model, cfg)  # Adam 0.9 / 0.98, eps 1e-6, no weight decay (the paper's)
    loss_fn = AddressCLIPLoss(cfg.loss_weights, cfg.geography_form, cfg.label_aware)
    table = synthetic_table(args.rows, args.addresses)
    params = count_parameters(model)

    if cuda:
        props = torch.cuda.get_device_properties(device)
        where = f"{props.name} ({props.total_memory / 2**30:.0f} GiB), {'bf16 autocast' if amp else 'fp32'}"
    else:
        where = f"CPU ({torch.get_num_threads()} threads), fp32"
    print(f"{cfg.backbone} at {model.image_size} px, every layer trained: {params['trainable']:,} of "
          f"{params['total']:,} parameters | {where} | losses {cfg.loss_weights} | torch {torch.__version__}")
    if not cuda:
        print("NOTE: CPU run (fp32, no autocast): these figures exercise the script and are NOT GPU figures.")

    results = []
    for b in sizes:
        try:
            r = measure(model, loss_fn, optimizer, table, b, model.image_size, args.steps, args.warmup, device, amp)
        except RuntimeError as exc:
            if not (cuda and is_oom(exc)):
                raise
            r = {"batch_size": b, "oom": True}
            optimizer.zero_grad(set_to_none=True)
            del exc
            gc.collect()
            torch.cuda.empty_cache()
        results.append(r)

    print(f"\n{'batch/GPU':>9} | {'images/s':>9} | {'ms/step':>8} | {'peak GiB':>8} | {'GPUs for 256':>12}")
    for r in results:
        if r.get("oom"):
            print(f"{r['batch_size']:>9} | {'out of memory':>32} |")
            continue
        peak = f"{r['peak_memory_gib']:.2f}" if r["peak_memory_gib"] is not None else "n/a"
        gpus = f"{PAPER_GLOBAL_BATCH / r['batch_size']:g}"
        print(f"{r['batch_size']:>9} | {r['images_per_s']:>9.1f} | {r['step_ms']:>8.1f} | {peak:>8} | {gpus:>12}")
    if not cuda:
        print(f"(CPU: peak resident memory of the process {peak_rss_gib():.2f} GiB; not a GPU figure)")

    main_result = results[0]
    report = {
        "device": str(device), "device_name": props.name if cuda else platform.processor() or "cpu",
        "is_gpu": cuda, "amp_bf16": amp, "backbone": cfg.backbone, "pretrained": None, "image_size": model.image_size,
        "train_image": cfg.train_image, "train_text": cfg.train_text, "parameters": params,
        "optimizer": {"name": type(optimizer).__name__, "lr": cfg.lr, "betas": [cfg.beta1, cfg.beta2], "eps": cfg.eps,
                      "weight_decay": cfg.weight_decay},
        "loss_weights": cfg.loss_weights, "label_aware": cfg.label_aware,
        "synthetic_rows": args.rows, "distinct_addresses": args.addresses,
        "batch_size": main_result["batch_size"], "images_per_s": main_result.get("images_per_s"),
        "step_ms": main_result.get("step_ms"), "peak_memory_bytes": main_result.get("peak_memory_bytes"),
        "peak_memory_gib": main_result.get("peak_memory_gib"), "oom": bool(main_result.get("oom")),
        "paper_global_batch": PAPER_GLOBAL_BATCH, "results": results,
        "peak_rss_gib": round(peak_rss_gib(), 3), "torch": torch.__version__,
        "cuda": torch.version.cuda, "note": "images/s per process; synthetic inputs already on the device" +
        ("" if cuda else "; CPU fp32 run: not a GPU figure"),
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
