"""Training: alignment pre-training and AddressCLIP training share this loop.

Determinism: everything random in an epoch (shuffling, augmentation, dropout) is seeded from
(seed, epoch, rank) at the epoch's start, so a run resumed from its last finished epoch ends with the same
weights and metrics as one never interrupted.

Reliability: one process trains a run at a time (`Run.lock`); unreadable images are found once per dataset
(`image_check`) and left out of training and evaluation, recorded in the run folder, so a deleted or damaged
image does not stop a run; each epoch's checkpoint carries the results rows up to it, and results.jsonl is
rewritten from them, so a run killed at any moment resumes to the same weights and metrics as one never killed.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from . import cache, image_check, runs, threads
from .config import TrainConfig
from .data import ADDRESS_TEMPLATE, CAPTION_ONLY_TEMPLATE, CAPTION_TEMPLATE, SplitTable
from .datasets.registry import load_dataset
from .distributed import DistInfo, all_reduce_mean, gather, init_distributed
from .evaluate import evaluate
from .frozen_layers import image_outputs, text_outputs
from .inference import collate_readable, load_model, resolve_device
from .losses import AddressCLIPLoss
from .model import AddressCLIP, create_model
from .paths import features_root
from .progress import enabled as progress_enabled
from .runs import Run

LOGIT_SCALE_MAX = math.log(100.0)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(cfg: TrainConfig, device: str) -> AddressCLIP:
    """The model a run starts from: the `pretrained` file (or the offline backbone's packaged weights), or
    `init_checkpoint` when given (e.g. the alignment run), with what trains set by `cfg`."""
    if not cfg.init_checkpoint:
        model = create_model(cfg.backbone, cfg.pretrained, cfg.image_size, cfg.train_image, cfg.train_text,
                             cfg.image_resize_mode, device=device)
    else:
        model = load_model(cfg.init_checkpoint, device, image_size=cfg.image_size, train_image=cfg.train_image,
                           train_text=cfg.train_text, image_resize_mode=cfg.image_resize_mode)
        if model.spec.backbone != cfg.backbone:
            raise ValueError(
                f"init_checkpoint {cfg.init_checkpoint} holds backbone {model.spec.backbone!r}, not {cfg.backbone!r}"
            )
    model.spec.pretrained = cfg.pretrained
    return model


def frozen_weights(model: AddressCLIP) -> dict[str, torch.Tensor]:
    """The weights this run does not train: `build_model` gives them back the same from the run's configuration."""
    return {name: p for name, p in model.clip.named_parameters() if not p.requires_grad}


def resume_state(model: AddressCLIP, frozen_digest: str) -> dict:
    """What an epoch's checkpoint keeps of the model: the trained weights and every buffer, with the digest of the
    frozen weights they were trained beside (an ablation run of the demo: 17.6 MB instead of 105-117)."""
    frozen = frozen_weights(model)
    return {"model": {k: v for k, v in model.clip.state_dict().items() if k not in frozen}, "frozen_digest": frozen_digest}


def restore(model: AddressCLIP, state: dict, frozen_digest: str) -> str | None:
    """Load a checkpoint's weights into the model `build_model` made. Returns the digest of the frozen weights the
    model now holds (for the checkpoints to come), or None, with nothing loaded, when the checkpoint was trained
    beside other frozen weights (its init checkpoint or weights file changed since). Checkpoints written before
    the frozen weights were left out hold every weight, the frozen ones included: those are what it holds now."""
    if "frozen_digest" not in state:
        model.clip.load_state_dict(state["model"])
        return cache.digest(frozen_weights(model), length=24)
    if state["frozen_digest"] != frozen_digest:
        return None
    missing, unexpected = model.clip.load_state_dict(state["model"], strict=False)
    frozen = set(frozen_weights(model))
    if unexpected or set(missing) != frozen:
        raise RuntimeError(f"checkpoint does not match the model: frozen weights in it {sorted(frozen - set(missing))[:5]}, "
                           f"trained weights missing {sorted(set(missing) - frozen)[:5]}, unexpected {unexpected[:5]}")
    return frozen_digest


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine from cfg.lr to cfg.lr_min over the remaining steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, total - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: AddressCLIP, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [(n, p) for n, p in model.clip.named_parameters() if p.requires_grad]
    # no weight decay on gains, biases and the logit scale (as CLIP)
    decay = [p for n, p in params if p.ndim >= 2 and "logit_scale" not in n]
    no_decay = [p for n, p in params if not (p.ndim >= 2 and "logit_scale" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel over every parameter (CPU and CUDA): 1.35 ms a step against foreach's 4.2 ms for the demo's
    # 1.4 M trainable parameters on one CPU thread, about 3% of an ablation run's step
    fused = model.device.type in ("cpu", "cuda") and torch.__version__ >= "2.4"  # fused on CPU since torch 2.4
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused, foreach=not fused)


def training_step(
    model: AddressCLIP, loss_fn: AddressCLIPLoss, images: torch.Tensor | None, idx: torch.Tensor, table: SplitTable,
    frozen: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Loss terms of one step on the *global* batch: this rank's features are gathered (with gradient)
    with every other rank's. Texts are encoded once per distinct string. With `frozen` (cached outputs of
    the frozen image layers for every row) the images are not needed."""
    rows = idx.tolist()
    if frozen is not None:
        image_feats = gather(model.encode_image_after_frozen(frozen[idx].to(model.device)))
    else:
        image_feats = gather(model.encode_image(images))
    addr_feats = cap_feats = None
    if loss_fn.active("address"):
        addr_feats = gather(model.encode_text([table.address_texts[i] for i in rows]))
    if loss_fn.active("caption"):
        cap_feats = gather(model.encode_text([table.caption_texts[i] for i in rows]))
    device = image_feats.device
    ids = gather(table.address_ids[idx].to(device), with_grad=False)
    coords = gather(table.coords[idx].to(device), with_grad=False)
    # which city each row comes from, only where the table joins several (decided on the CPU: no GPU sync a step)
    cities = gather(table.cities[idx].to(device), with_grad=False) if bool(table.cities.any()) else None
    return loss_fn(image_feats, model.logit_scale, addr_feats, cap_feats, ids, coords, cities)


def images_to_skip(cfg: TrainConfig, run: Run, info: DistInfo, datasets: dict, size_hint: int | None,
                      cache_dir: Path, progress: bool) -> tuple[dict[str, dict[str, str]], dict]:
    """({dataset name: {image: reason}} of the images to leave out, facts of the check), the same on every rank:
    the main process checks each dataset (once per dataset: `image_check`), adds what this run skipped before
    when it resumes (so its table stays the one it started with), and shares the result."""
    found = None
    if info.is_main:
        recorded = run.skipped_images.get("datasets", {}) if cfg.resume else {}
        bad, facts = {}, {}
        for name, ds in datasets.items():
            now, facts[name] = image_check.unreadable_images(ds, size_hint, cache_dir, cfg.num_workers, progress)
            bad[name] = {**recorded.get(name, {}), **now}
            new = sorted(set(now) - set(recorded.get(name, {})))
            if recorded.get(name) is not None and new:
                warnings.warn(f"run {run.name}: {len(new)} image(s) of {name} became unreadable since the run started "
                              f"({image_check.describe({k: now[k] for k in new})}); they are left out from here on, so "
                              "the run no longer equals one trained without interruption", image_check.SkippedImagesWarning,
                              stacklevel=3)
        found = (bad, facts)
    if info.enabled:
        box = [found]
        torch.distributed.broadcast_object_list(box, src=0)
        found = box[0]
    bad, facts = found
    if cfg.strict_images and any(bad.values()):
        first = {f"{name}: {img}": why for name, b in bad.items() for img, why in b.items()}
        raise image_check.BadImagesError(
            f"{len(first)} unreadable image(s) (strict_images=True): {image_check.describe(first)}; fix or remove them, "
            "or train with strict_images=False to skip them")
    return bad, facts


def results_before(run: Run, epoch: int) -> list[dict]:
    """The rows of results.jsonl up to `epoch`, one per epoch (for checkpoints written before they carried their
    rows): lines that do not parse (a write cut short) and repeated epochs are dropped."""
    rows: dict[int, dict] = {}
    if run.results_path.exists():
        for line in run.results_path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("epoch"), int) and row["epoch"] <= epoch:
                rows.setdefault(row["epoch"], row)
    return [rows[e] for e in sorted(rows)]


class IndexRows(torch.utils.data.Dataset):
    """Stands in for the image rows when their frozen-layer outputs are cached."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.empty(0), i


def sync_gradients(params: list[torch.nn.Parameter], info: DistInfo) -> None:
    """Average gradients over ranks in one flattened all-reduce."""
    if not info.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch._utils._flatten_dense_tensors(grads)
    torch.distributed.all_reduce(flat)
    flat /= info.world_size
    for g, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
        g.copy_(synced)


def tensorboard_writer(run: Run, enabled: bool):
    """A SummaryWriter into `<run>/tensorboard` (open with `tensorboard --logdir outputs/runs`) when the
    tensorboard package is installed; None otherwise or when not `enabled` (processes other than the main one)."""
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: results.jsonl holds the same numbers
        return None
    return SummaryWriter(str(run.tensorboard_dir))


def train(cfg: TrainConfig) -> Path:
    """Train (or resume, or reuse) the run `cfg` describes; returns its folder. While it trains, the run is
    locked (`Run.lock`, by the main process): a second call for the same run folder gets a `RunLockedError`."""
    device = resolve_device(cfg.device)
    info = init_distributed(device)
    if info.enabled and device.startswith("cuda"):
        device = f"cuda:{info.local_rank}"
    run = Run.of(cfg)
    with run.lock() if info.is_main else contextlib.nullcontext():
        return _train(cfg, run, device, info)


def _train(cfg: TrainConfig, run: Run, device: str, info: DistInfo) -> Path:
    if cfg.overwrite and info.is_main:
        run.remove()
    if info.enabled:  # no rank reads the run folder (finished? a checkpoint?) before the main one has emptied it
        torch.distributed.barrier()
    run.check_identity(cfg)
    if run.finished and cfg.resume:
        if info.is_main:
            run.drop_previous()  # left by a run that finished before previous.pt was dropped first
        return run.folder  # finished: reuse
    progress = progress_enabled(cfg.progress) and info.is_main

    seed_everything(cfg.seed)
    ds = load_dataset(cfg.dataset)
    datasets = {cfg.dataset: ds, **{name: load_dataset(name) for name in cfg.extra_datasets}}
    model = build_model(cfg, device)
    features_dir = features_root(cfg.runs_dir)
    bad, check_facts = images_to_skip(cfg, run, info, datasets, model.image_size, features_dir, progress)
    skip = bad[cfg.dataset]  # of the main dataset: left out of validation and the final evaluation too
    caption_template = CAPTION_TEMPLATE if cfg.caption_text == "caption+address" else CAPTION_ONLY_TEMPLATE
    tables = [SplitTable.from_dataset(ds, cfg.train_splits, caption_template=caption_template,
                                      fraction_locations=cfg.fraction_locations, seed=cfg.seed, skip=set(skip))]
    tables += [SplitTable.from_dataset(datasets[name], "train", caption_template=caption_template, skip=set(bad[name]))
               for name in cfg.extra_datasets]
    table = SplitTable.concat(tables)
    table_source = [name for name, t in zip([cfg.dataset, *cfg.extra_datasets], tables) for _ in t.paths]  # row -> dataset
    train_skipped = {}  # training rows left out, per dataset
    for name, d in datasets.items():
        splits = cfg.train_splits.split("+") if name == cfg.dataset else ["train"]
        train_skipped[name] = int(d.samples.loc[d.samples["split"].isin(splits), "image"].isin(set(bad[name])).sum())
    skipped_record = {"datasets": bad, "check": check_facts, "skipped_training_rows": train_skipped,
                      "during_training": run.skipped_images.get("during_training", []) if cfg.resume else []}
    if info.is_main:
        cache.write_json(run.skipped_images_path, skipped_record)
        for name in datasets:
            image_check.warn_skipped(bad[name], f"{name} (left out of training and evaluation; listed in "
                                                f"{run.skipped_images_path})")
    per_rank = cfg.batch_size // info.world_size
    if cfg.batch_size % info.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {info.world_size} processes")
    steps_per_epoch = len(table.paths) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {len(table.paths)} training images of {cfg.dataset!r}")
    total_steps = steps_per_epoch * cfg.epochs
    loss_fn = AddressCLIPLoss(cfg.loss_weights, cfg.geography_form, cfg.label_aware)
    optimizer = make_optimizer(model, cfg)
    trainable = [p for p in model.clip.parameters() if p.requires_grad]
    amp = cfg.amp and device.startswith("cuda")
    # workers, pinned memory on CUDA
    loader_options = threads.loader_options(device, cfg.num_workers, batches=len(table.paths) // cfg.batch_size)

    start_epoch, records = 0, []
    frozen_digest = cache.digest(frozen_weights(model), length=24)
    state = run.load_last(map_location=device, move_aside=info.is_main) if cfg.resume else None
    restored = restore(model, state, frozen_digest) if state is not None else None
    if state is not None and restored is None:
        # not damaged, but not this configuration's: the same warning category, so one filter covers both
        warnings.warn(f"run {run.name}: its checkpoint was trained beside other frozen weights than this configuration "
                      f"gives (the init checkpoint or weights file changed); training starts afresh",
                      runs.DamagedCheckpointWarning, stacklevel=2)
        state = None
    if state is not None:
        frozen_digest = restored
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
        records = list(state["results"]) if "results" in state else results_before(run, start_epoch)
    if info.is_main:
        run.write_results(records)  # exactly the rows of the epochs the checkpoint holds
        from .model import count_parameters

        run.write_params({
            "config": cfg.identity(), "run_control": {k: v for k, v in cfg.to_dict().items() if k not in cfg.identity()},
            "code_version": runs.code_version(), "environment": runs.environment(), "device": device,
            "world_size": info.world_size, "dataset_card": {k: ds.card.get(k) for k in ("name", "images", "addresses", "synthetic")},
            "parameters": count_parameters(model), "steps_per_epoch": steps_per_epoch,
            "skipped_images": {name: len(b) for name, b in bad.items()},
            # reading images when the frozen layers are not cached (always with augment=True, where it is part of
            # what made the numbers; the cache's loader yields row indices in the process)
            "loader_workers": loader_options["num_workers"],
        })

    sampler = DistributedSampler(range(len(table.paths)), num_replicas=info.world_size, rank=info.rank,
                                 shuffle=True, seed=cfg.seed, drop_last=True)
    transform = model.preprocess_train if cfg.augment else model.preprocess_val
    # random crops need full resolution; an image unreadable since the check is reported, not raised
    rows = table.rows(transform, None if cfg.augment else model.image_size, report_errors=True)
    use_cache = cfg.cache_frozen_image and not cfg.augment

    def readable(split: str) -> list[str]:
        return [str(ds.root / p) for p in ds.split(split)["image"] if p not in skip]

    def cached(paths: list[str]):
        if not use_cache:
            return None
        return image_outputs(model, paths, model.preprocess_val, max_gb=cfg.cache_max_gb, cache_dir=features_dir,
                             num_workers=cfg.num_workers, progress=progress)

    # frozen text-trunk outputs of every training text and candidate address, from disk when known (a no-op
    # unless the text trunk is frozen; image augmentation does not change texts)
    text_outputs(model, table.address_texts + table.caption_texts + [ADDRESS_TEMPLATE.format(address=a) for a in ds.addresses],
                    cache_dir=features_dir, progress=progress)
    frozen = cached(table.paths)
    if frozen is not None:
        rows = IndexRows(len(rows))  # the loader then yields row indices only: no image is decoded again
    writer = tensorboard_writer(run, info.is_main)
    epochs_run = 0
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.stop_after_epochs is not None and epochs_run >= cfg.stop_after_epochs:
            if writer is not None:
                writer.close()
            return run.folder
        seed_everything(cfg.seed + 1000 * (epoch + 1) + info.rank)
        sampler.set_epoch(epoch)
        # cached frozen outputs: the loader yields row indices only, which need no worker process
        options = {"num_workers": 0, "pin_memory": False} if frozen is not None else loader_options
        loader = DataLoader(rows, batch_size=per_rank, sampler=sampler, drop_last=True, **options,
                            generator=torch.Generator().manual_seed(cfg.seed + epoch),
                            collate_fn=collate_readable)  # an image unreadable since the check: reported
        model.train()
        sums: dict[str, float] = {}
        seen, t0 = 0, time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for step_in_epoch, (images, rows_in_batch, failed) in enumerate(bar):
            idx = torch.as_tensor(rows_in_batch, dtype=torch.long)
            step = epoch * steps_per_epoch + step_in_epoch
            if failed:  # deleted or overwritten since the check: left out of this batch, and of the run from now on
                lost = {table.frame["image"].iloc[i]: why for i, why in failed.items()}
                if info.enabled:  # every rank must contribute equal batches
                    raise image_check.BadImagesError(
                        f"image(s) became unreadable during training: {image_check.describe(lost)}; run the same "
                        "command again to resume from the last finished epoch without them")
                for i, why in failed.items():
                    skipped_record["datasets"][table_source[i]][table.frame["image"].iloc[i]] = why
                    skipped_record["during_training"].append({"epoch": epoch + 1, "dataset": table_source[i],
                                                              "image": table.frame["image"].iloc[i], "reason": why})
                cache.write_json(run.skipped_images_path, skipped_record)
                image_check.warn_skipped(lost, f"the training batch of step {step} (unreadable since the check)")
                if len(idx) < 2:  # contrastive losses need two rows
                    continue
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step, total_steps, cfg)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                losses = training_step(model, loss_fn, None if frozen is not None else images.to(device, non_blocking=True),
                                       idx, table, frozen)
            total = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            sync_gradients(trainable, info)
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, LOGIT_SCALE_MAX)
            for k, v in {**losses, "loss": total}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            seen += len(idx) * info.world_size
            if writer is not None:
                writer.add_scalar("train/loss", float(total.detach()), step)
                writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], step)
            bar.set_postfix(loss=f"{sums['loss'] / (step_in_epoch + 1):.3f}", img_s=f"{seen / (time.perf_counter() - t0):.1f}")
        elapsed = time.perf_counter() - t0
        record = {"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch, "lr": lr_at((epoch + 1) * steps_per_epoch - 1, total_steps, cfg),
                  "images_per_s": round(seen / elapsed, 2), "epoch_seconds": round(elapsed, 2),
                  "logit_scale": float(model.logit_scale.detach().exp())}
        record.update({k: all_reduce_mean(v / steps_per_epoch) for k, v in sums.items()})
        if info.is_main and cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            val = evaluate(model, ds, "val", num_workers=cfg.num_workers, progress=progress,
                           frozen=cached(readable("val")), skip=skip)
            record.update({f"val_{k}": v for k, v in val.quality.items()})
        if writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    writer.add_scalar(f"epoch/{k}", v, record["step"])
            writer.flush()
        if info.is_main:
            # the checkpoint first, carrying every row so far: an epoch's row exists only once the state it
            # describes is on disk, and a resumed run rewrites results.jsonl from the checkpoint it resumes from
            records.append(json.loads(json.dumps(record, sort_keys=True, default=str)))
            run.save_last({**resume_state(model, frozen_digest), "optimizer": optimizer.state_dict(),
                           "epoch": epoch + 1, "spec": model.spec.to_dict(), "results": records})
            run.write_results(records)
            if progress:
                tqdm.write(f"epoch {epoch + 1}: " + ", ".join(f"{k}={v:.4g}" for k, v in record.items() if isinstance(v, float)))
        epochs_run += 1
        if info.enabled:
            torch.distributed.barrier()

    if writer is not None:
        writer.close()
    if info.is_main:
        run.save_model({"model": model.clip.state_dict(), "spec": model.spec.to_dict(), "config": cfg.identity()})
        metrics = {"run": run.name, "epochs": cfg.epochs, "code_version": runs.code_version()}
        metrics["skipped_train_images"] = sum(train_skipped.values())
        artefacts = {}
        if cfg.final_split:
            result = evaluate(model, ds, cfg.final_split, num_workers=cfg.num_workers, progress=progress,
                              frozen=cached(readable(cfg.final_split)), skip=skip)
            metrics.update(result.metrics)
            artefacts = {"per_address": result.per_address, "predictions": result.predictions}
        # before finishing: a finished run is reused as it is, so a kill between the two would keep previous.pt for good
        run.drop_previous()
        run.finish(metrics, **artefacts)
    if info.enabled:
        torch.distributed.barrier()
    return run.folder


def aligned_start(cfg: TrainConfig, align_dataset: str | None, align_epochs: int | None) -> TrainConfig:
    """`cfg` starting from alignment pre-training (run or reused) where its backbone needs one: only the offline
    backbone, whose towers were never trained together; CLIP weights are aligned already."""
    from .model import OFFLINE_BACKBONES

    if cfg.backbone not in OFFLINE_BACKBONES or not align_dataset or not align_epochs:
        return cfg
    align_run = train(alignment_config(cfg, align_dataset, align_epochs))
    return cfg.replace(init_checkpoint=str(align_run / "model.pt"))


def alignment_config(cfg: TrainConfig, dataset: str, epochs: int, **changes) -> TrainConfig:
    """The alignment pre-training stage for an unaligned backbone: CLIP image-caption training (no addresses,
    no geography) on another city, standing in for CLIP's web-scale pre-training. Settings of the main run's data
    and losses are reset, so that the main run's options neither change the alignment run (`train_splits`: the
    main dataset's) nor, where they do not act on it (the address and geography losses' forms), give it another
    identity and train the same run again."""
    return cfg.replace(dataset=dataset, epochs=epochs, w_address=0.0, w_caption=1.0, w_geography=0.0,
                       caption_text="caption", init_checkpoint=None, final_split=None, eval_every=0,
                       fraction_locations=1.0, extra_datasets=[], run_name=None, train_splits="train",
                       label_aware=False, geography_form="similarity", **changes)
