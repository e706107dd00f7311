"""Worker for test_distributed: one rank's loss and synced gradients on its half of a fixed global batch."""
import os

import torch
import torch.distributed as dist

from addressclip.data import SplitTable
from addressclip.datasets.format import read_dataset
from addressclip.distributed import DistInfo
from addressclip.losses import AddressCLIPLoss
from addressclip.model import create_model
from addressclip.train import sync_gradients, training_step

GLOBAL_BATCH = 8


def step(rank: int, world: int, root: str, out: str, init_file: str | None = None) -> None:
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    # eval mode: dropout draws differ between processes, and stochastic layers cannot match; gradients still flow
    model = create_model(train_image="last:1", train_text="last:1").eval()
    ds = read_dataset(root)
    table = SplitTable.from_dataset(ds, "train")
    rows = table.rows(model.preprocess_val)
    idx = torch.arange(GLOBAL_BATCH).flip(0)  # any fixed order
    mine = idx.chunk(world)[rank]
    images = torch.stack([rows[i][0] for i in mine.tolist()])
    loss_fn = AddressCLIPLoss(label_aware=True)
    losses = training_step(model, loss_fn, images, mine, table)
    total = sum(losses.values())
    total.backward()
    params = [p for p in model.clip.parameters() if p.requires_grad]
    sync_gradients(params, DistInfo(rank, world, rank))
    torch.save({"losses": {k: v.detach() for k, v in losses.items()},
                "grads": [p.grad.clone() for p in params]}, os.path.join(out, f"{world}-{rank}.pt"))
    if world > 1:
        dist.destroy_process_group()
