"""Distributed equality: N processes, each on its share of a fixed global batch, against one process on the
whole batch. Each process saves its loss terms and its gradients after `sync_gradients`; `compare` measures
the differences. Used by tests/test_distributed.py (gloo, CPU) and runnable by hand on GPUs:

    .venv/bin/python tests/dist_check.py                     # cuda if present (nccl), else cpu (gloo): the paper model
    .venv/bin/python tests/dist_check.py --device cpu --backbone ViT-S-32-alt --image-size 64
    .venv/bin/python tests/dist_check.py --backbone effnet-lite0-minilm --train-image last:1 --train-text all
    .venv/bin/python tests/dist_check.py --backbone effnet-lite0-minilm --train-image last:1 --train-text all --no-dropout

By default the model is the paper's (ViT-B-16-quickgelu, random init, every layer trained) in train mode, as
the training loop runs it. NCCL needs one GPU per process: with fewer GPUs than processes the check falls back
to gloo on CUDA tensors (all ranks on cuda:0) and says so. Exit status: 0 equal (or nothing could be run),
1 not equal. TF32 is switched off so that fp32 maths is compared; `--amp` adds the trainer's bf16 autocast (then
only bf16-level agreement can be expected).
"""
from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from torch import nn

from addressclip.data import SplitTable
from addressclip.datasets.format import read_dataset
from addressclip.distributed import DistInfo
from addressclip.losses import AddressCLIPLoss
from addressclip.model import create_model
from addressclip.train import sync_gradients, training_step

GLOBAL_BATCH = 8
# the original check: eval mode (no dropout), the last block of each tower trained
EVAL_LAST1 = {"name": "eval-last1", "train_image": "last:1", "train_text": "last:1", "mode": "eval"}


def active_dropout(model: nn.Module) -> int:
    """Dropout layers that would drop something in this forward pass (train mode, p > 0)."""
    n = 0
    for m in model.modules():
        if not m.training:
            continue
        if isinstance(m, nn.Dropout) and m.p > 0:
            n += 1
        elif isinstance(m, nn.MultiheadAttention) and m.dropout > 0:
            n += 1
    return n


def disable_dropout(model: nn.Module) -> None:
    """p = 0 everywhere (HF BERT's SDPA attention reads its dropout probability from its nn.Dropout)."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        elif isinstance(m, nn.MultiheadAttention):
            m.dropout = 0.0


def _device_of(rank: int, device: str) -> str:
    if device == "cpu":
        return "cpu"
    return f"cuda:{rank % torch.cuda.device_count()}"  # nccl: one GPU per rank (the launcher checks there are enough)


def run_config(rank: int, world: int, table: SplitTable, out: str, cfg: dict, device: str = "cpu") -> None:
    """One rank's loss terms and synced gradients for one model configuration."""
    cfg = {**EVAL_LAST1, **cfg}
    dev = _device_of(rank, device)
    torch.manual_seed(cfg.get("seed", 0))  # same weights everywhere; dropout draws are not shared by any layout
    model = create_model(cfg.get("backbone", "effnet-lite0-minilm"), None, cfg.get("image_size"),
                         cfg["train_image"], cfg["train_text"], device=dev)
    model.train(cfg["mode"] == "train")
    if cfg.get("no_dropout"):
        disable_dropout(model)
    batch = cfg.get("global_batch", GLOBAL_BATCH)
    idx = torch.arange(batch).flip(0)  # any fixed order
    mine = idx.chunk(world)[rank]
    rows = table.rows(model.preprocess_val)
    images = torch.stack([rows[i][0] for i in mine.tolist()]).to(dev)
    loss_fn = AddressCLIPLoss(cfg.get("weights"), label_aware=cfg.get("label_aware", True))
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bool(cfg.get("amp")) and dev != "cpu"):
        losses = training_step(model, loss_fn, images, mine, table)
    total = sum(losses.values())
    total.backward()
    params = [p for p in model.clip.parameters() if p.requires_grad]
    sync_gradients(params, DistInfo(rank, world, rank))
    torch.save({"losses": {k: v.detach().float().cpu() for k, v in losses.items()},
                "grads": [p.grad.detach().float().cpu() for p in params],
                "active_dropout": active_dropout(model), "device": dev,
                "backend": dist.get_backend() if world > 1 else None},
               os.path.join(out, f"{cfg['name']}-{world}-{rank}.pt"))


def step(rank: int, world: int, root: str, out: str, init: str | None = None, configs: list[dict] | None = None,
         backend: str = "gloo", device: str = "cpu") -> None:
    """Worker (mp.spawn's entry): join the group, then run every configuration in turn.
    `init` is a file path (file:// rendezvous) or a URL such as env://."""
    torch.set_num_threads(1)
    if device != "cpu":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.cuda.set_device(_device_of(rank, device))
    if world > 1:
        url = init if "://" in str(init) else f"file://{init}"
        dist.init_process_group(backend, init_method=url, rank=rank, world_size=world)
    table = SplitTable.from_dataset(read_dataset(root), "train")
    try:
        for cfg in configs or [EVAL_LAST1]:
            run_config(rank, world, table, out, cfg, device)
    finally:
        if world > 1:
            dist.destroy_process_group()


def compare(out: str, name: str, world: int = 2) -> dict:
    """Largest differences between each rank of the `world`-process run and the single-process run."""
    one = torch.load(os.path.join(out, f"{name}-1-0.pt"))
    loss_abs = grad_abs = grad_rel = worst_tensor_rel = 0.0
    ranks = [torch.load(os.path.join(out, f"{name}-{world}-{r}.pt")) for r in range(world)]
    for two in ranks:
        assert set(two["losses"]) == set(one["losses"]) and len(two["grads"]) == len(one["grads"])
        loss_abs = max(loss_abs, *(abs(float(two["losses"][k] - v)) for k, v in one["losses"].items()))
        diffs = [g2 - g1 for g2, g1 in zip(two["grads"], one["grads"])]
        grad_abs = max(grad_abs, max(float(d.abs().max()) for d in diffs))
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in one["grads"]))
        grad_rel = max(grad_rel, float(torch.sqrt(sum((d.double() ** 2).sum() for d in diffs)) / norm))
        # per tensor, skipping gradients that are zero in exact arithmetic and only rounding noise here
        # (e.g. attention key biases: softmax ignores a constant shift)
        worst_tensor_rel = max(worst_tensor_rel, max(
            float(d.norm() / g.norm()) for d, g in zip(diffs, one["grads"]) if g.norm() > 1e-6 * norm))
    return {"name": name, "loss_abs": loss_abs, "grad_abs": grad_abs, "grad_rel": grad_rel,
            "worst_tensor_grad_rel": worst_tensor_rel, "active_dropout": one["active_dropout"],
            "losses_one": {k: float(v) for k, v in one["losses"].items()},
            "losses_ranks": [{k: float(v) for k, v in r["losses"].items()} for r in ranks],
            "backend": ranks[0]["backend"], "devices": [r["device"] for r in ranks], "grad_tensors": len(one["grads"])}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import tempfile
    from pathlib import Path

    import torch.multiprocessing as mp

    ap = argparse.ArgumentParser(description="N processes on shares of a global batch == 1 process on all of it?")
    ap.add_argument("--backend", choices=("auto", "nccl", "gloo"), default="auto", help="auto: nccl on cuda, gloo on cpu")
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    ap.add_argument("--world", type=int, default=2, help="processes")
    ap.add_argument("--backbone", default="ViT-B-16-quickgelu")
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--train-image", default="all")
    ap.add_argument("--train-text", default="all")
    ap.add_argument("--mode", choices=("train", "eval"), default="train")
    ap.add_argument("--no-dropout", action="store_true", help="set every dropout probability to 0")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast as the trainer uses on CUDA")
    ap.add_argument("--global-batch", type=int, default=GLOBAL_BATCH)
    ap.add_argument("--rtol", type=float, default=None, help="relative tolerance (default 1e-4; 5e-2 with --amp)")
    ap.add_argument("--dataset", default=None, help="a built dataset folder (default: the test fixture, built in a temp dir)")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available here")
        return 0
    backend = args.backend if args.backend != "auto" else ("nccl" if device == "cuda" else "gloo")
    if backend == "nccl" and device == "cpu":
        ap.error("nccl needs --device cuda")
    if args.global_batch % args.world:
        ap.error(f"--global-batch {args.global_batch} is not divisible by --world {args.world}")
    note = ""
    if backend == "nccl" and torch.cuda.device_count() < args.world:
        note = (f"NCCL needs one GPU per process and {torch.cuda.device_count()} GPU(s) are visible for {args.world} "
                f"processes: NCCL NOT checked; falling back to gloo on CUDA tensors (ranks share cuda:0)")
        print(note)
        backend = "gloo"
    rtol = args.rtol if args.rtol is not None else (5e-2 if args.amp else 1e-4)
    cfg = {"name": "check", "backbone": args.backbone, "image_size": args.image_size, "train_image": args.train_image,
           "train_text": args.train_text, "mode": args.mode, "no_dropout": args.no_dropout, "amp": args.amp,
           "global_batch": args.global_batch}

    with tempfile.TemporaryDirectory(prefix="dist-check-") as tmp:
        root = args.dataset
        if root is None:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from fixtures import make_tiny_dataset

            root = str(make_tiny_dataset(Path(tmp) / "tiny"))
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ["MASTER_PORT"] = str(_free_port())
        step(0, 1, root, tmp, None, [cfg], backend, device)
        try:
            mp.spawn(step, args=(args.world, root, tmp, "env://", [cfg], backend, device), nprocs=args.world, join=True)
        except Exception as exc:  # noqa: BLE001
            if note:  # the gloo-on-CUDA fallback itself is not supported by this build
                print(f"gloo on CUDA tensors failed ({type(exc).__name__}: {str(exc).strip()[-300:]}); nothing checked")
                return 0
            raise
        result = compare(tmp, "check", args.world)

    result.update(backend=backend, device=device, world=args.world, rtol=rtol, fallback_note=note or None,
                  config={k: v for k, v in cfg.items() if k != "name"})
    loss_rel = result["loss_abs"] / max(1e-12, max(abs(v) for v in result["losses_one"].values()))
    result["equal"] = loss_rel <= rtol and result["grad_rel"] <= rtol
    print(f"{args.backbone} ({args.train_image}/{args.train_text}, {args.mode} mode, "
          f"{'bf16 autocast' if args.amp else 'fp32'}{', dropout off' if args.no_dropout else ''}): "
          f"{args.world} x {args.global_batch // args.world} on {backend} {result['devices']} vs 1 x {args.global_batch}")
    print(f"active dropout layers: {result['active_dropout']}")
    print(f"{'term':>14} | {'1 process':>10} | " + " | ".join(f"{'rank ' + str(r):>10}" for r in range(args.world)))
    for k, v in result["losses_one"].items():
        print(f"{k:>14} | {v:>10.6f} | " + " | ".join(f"{lr[k]:>10.6f}" for lr in result["losses_ranks"]))
    print(f"max |loss diff| {result['loss_abs']:.2e} | gradients ({result['grad_tensors']} tensors): "
          f"max |diff| {result['grad_abs']:.2e}, relative (global norm) {result['grad_rel']:.2e}, "
          f"worst tensor {result['worst_tensor_grad_rel']:.2e} (of those above 1e-6 of the norm)")
    print(("EQUAL" if result["equal"] else "NOT EQUAL") + f" within rtol {rtol:g}" + (f" [{note}]" if note else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0 if result["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
