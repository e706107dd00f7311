import torch
import torch.multiprocessing as mp

import dist_check


def test_two_processes_equal_one_process_on_the_global_batch(tiny_dataset, tmp_path):
    """Features, address ids and coordinates gathered across 2 gloo processes give the single-process loss
    and, after gradient averaging, the single-process gradients."""
    dist_check.step(0, 1, str(tiny_dataset), str(tmp_path))
    mp.spawn(dist_check.step, args=(2, str(tiny_dataset), str(tmp_path), str(tmp_path / "init")), nprocs=2, join=True)
    one = torch.load(tmp_path / "1-0.pt")
    for rank in (0, 1):
        two = torch.load(tmp_path / f"2-{rank}.pt")
        assert set(two["losses"]) == {"address_loss", "caption_loss", "geo_loss"}
        for k, v in one["losses"].items():
            assert torch.allclose(two["losses"][k], v, atol=1e-5), k
        assert len(two["grads"]) == len(one["grads"])
        for g2, g1 in zip(two["grads"], one["grads"]):
            assert torch.allclose(g2, g1, atol=1e-5, rtol=1e-4)
