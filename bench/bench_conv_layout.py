"""The convolutional image trunk in the standard (NCHW) layout against channels-last (what `AddressCLIP` uses):
the frozen layers' forward pass (the caching pass of training, and evaluation) and a training step of what
trains after them (the ablations' `last:1`), at the backbone's own input size, and how far the outputs differ;
then the frozen layers channels-last with their batch norms folded into the convolutions, as `AddressCLIP` runs them.

    .venv/bin/python bench/bench_conv_layout.py --threads 2
    .venv/bin/python bench/bench_conv_layout.py --threads 1 --bf16   # also channels-last under bf16 autocast
    .venv/bin/python bench/bench_conv_layout.py --threads 2 --chunk   # also the frozen layers in chunks (AddressCLIP's)
    .venv/bin/python bench/bench_conv_layout.py --threads 1 --pool-grad   # also the step with the pooled gradient channels-last

``--bf16`` adds the same two passes, channels-last, under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (oneDNN's
bf16 kernels: AMX where the CPU has it), with how far its frozen outputs are from fp32's: what a bf16 demo would gain.
``--chunk`` times the folded frozen layers on the whole batch in one pass against chunks of `CPU_FROZEN_CHUNK` images
(what `AddressCLIP.encode_frozen_image_layers` does on a CPU: the early layers are bound by memory), and says whether
the two give the same bits.
``--pool-grad`` times the channels-last training step as `AddressCLIP` runs it against the same step with the global
pool's gradient turned channels-last before it reaches the last batch norm (`bn2`): the pool hands its gradient back in
the standard layout, so that batch norm's backward pass meets two layouts. It says whether the trained weights'
gradients keep their bits: on the AVX2 AMD EPYC of 2026-12-03 they did not (that batch norm then sums in another order),
so `AddressCLIP` does not do it; every trained number would move (README, "Speed").
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN builds its kernels for these shapes
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="effnet-lite0-minilm")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--bf16", action="store_true", help="also time channels-last under bf16 autocast")
    ap.add_argument("--chunk", action="store_true", help="also time the frozen layers in one pass against in chunks")
    ap.add_argument("--pool-grad", action="store_true", help="also time the step with the pooled gradient channels-last")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from addressclip.model import create_model
    from addressclip.runs import cpu_model

    torch.manual_seed(0)
    model = create_model(args.backbone, train_image="last:1", train_text="proj")
    trunk, k = model.clip.visual.trunk, model.frozen_image_blocks()
    images = torch.randn(args.batch_size, 3, model.image_size, model.image_size)

    def frozen(layout, bf16=False):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            x = trunk.bn1(trunk.conv_stem(images.contiguous(memory_format=layout)))
            for block in trunk.blocks[:k]:
                x = block(x)
        return x

    cached = frozen(torch.contiguous_format).contiguous()
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.train()

    def step(layout, bf16=False, pool_grad_channels_last=False):
        for p in trainable:
            p.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # the forward pass; backward follows its dtypes
            x = cached.contiguous(memory_format=layout)
            for block in trunk.blocks[k:]:
                x = block(x)
            x = trunk.bn2(trunk.conv_head(x))
            if pool_grad_channels_last:
                x.register_hook(lambda grad: grad.contiguous(memory_format=torch.channels_last))
            out = model.clip.visual.head(trunk.forward_head(x))
        out.float().sum().backward()

    print(f"{args.backbone}, {model.image_size} px, batch {args.batch_size}, {torch.get_num_threads()} intra-op threads "
          f"(median of {args.repeats}), {cpu_model()} ({torch.backends.cpu.get_cpu_capability()}):")
    passes = (("frozen layers, forward", frozen), (f"training step of the last {len(trunk.blocks) - k} block(s) + head", step))
    for name, fn in passes:
        nchw = timed(lambda: fn(torch.contiguous_format), args.repeats)
        last = timed(lambda: fn(torch.channels_last), args.repeats)
        print(f"  {name}: NCHW {nchw:.1f} ms, channels-last {last:.1f} ms, {nchw / last:.2f}x")
    diff = (frozen(torch.contiguous_format) - frozen(torch.channels_last)).abs().max().item()
    print(f"  largest difference of the frozen outputs: {diff:.2e} (largest value {cached.abs().max().item():.1f})")
    model.eval()  # what AddressCLIP runs: channels-last with the frozen layers' batch norms folded (bn_folding.py)
    from addressclip import model as model_module

    chunk = model_module.CPU_FROZEN_CHUNK

    def folded_pass(size: int) -> torch.Tensor:  # the whole batch through the folded layers, `size` images at a time
        model_module.CPU_FROZEN_CHUNK = size
        try:
            return model.encode_frozen_image_layers(images)
        finally:
            model_module.CPU_FROZEN_CHUNK = chunk

    last = timed(lambda: frozen(torch.channels_last), args.repeats)
    folded = timed(lambda: folded_pass(len(images)), args.repeats)
    one_pass = folded_pass(len(images))
    diff = (one_pass - cached).abs().max().item()
    print(f"  frozen layers, channels-last: batch norms apart {last:.1f} ms, folded {folded:.1f} ms, {last / folded:.2f}x; "
          f"largest difference of the outputs {diff:.2e}")
    if args.chunk:
        chunked = timed(lambda: folded_pass(chunk), args.repeats)
        out = folded_pass(chunk)
        same = "the same bits" if torch.equal(out, one_pass) else f"largest difference {(out - one_pass).abs().max().item():.2e}"
        print(f"  frozen layers, folded: batch of {len(images)} in one pass {folded:.1f} ms, in chunks of {chunk} "
              f"{chunked:.1f} ms, {folded / chunked:.2f}x; {same}")
    model.train()
    if args.pool_grad:
        grads = []
        for turned in (False, True):
            step(torch.channels_last, pool_grad_channels_last=turned)
            grads.append({id(p): p.grad.clone() for p in trainable if p.grad is not None})
        same = all(torch.equal(grads[0][i], grads[1][i]) for i in grads[0])
        diff = max((grads[0][i] - grads[1][i]).abs().max().item() for i in grads[0])
        times = {turned: [] for turned in (False, True)}
        for _ in range(3):  # alternating rounds: this host's speed drifts
            for turned in (False, True):
                times[turned].append(timed(lambda: step(torch.channels_last, pool_grad_channels_last=turned), args.repeats))
        now, turned = statistics.median(times[False]), statistics.median(times[True])
        print(f"  training step, channels-last: as AddressCLIP runs it {now:.1f} ms, pooled gradient channels-last "
              f"{turned:.1f} ms, {now / turned:.2f}x (medians of 3 alternating rounds); gradients "
              + ("the same bits" if same else f"not the same bits (largest difference {diff:.2e})"))
    if args.bf16:
        for name, fn in passes:
            fp32 = timed(lambda: fn(torch.channels_last), args.repeats)
            bf16 = timed(lambda: fn(torch.channels_last, bf16=True), args.repeats)
            print(f"  {name}, channels-last: fp32 {fp32:.1f} ms, bf16 autocast {bf16:.1f} ms, {fp32 / bf16:.2f}x")
        diff = (frozen(torch.channels_last, bf16=True).float() - cached).abs().max().item()
        print(f"  largest difference of the bf16 frozen outputs from fp32's: {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
