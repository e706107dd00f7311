"""Candidate galleries: encoding throughput against what the text tower's FLOPs allow on this CPU, and the peak
resident memory of ranking 100,000 candidates (issue 13).

For each backbone -- the offline default ``effnet-lite0-minilm`` (MiniLM-L6 text tower) and the paper's
``ViT-B-16-quickgelu`` (CLIP's 12-layer text transformer; random weights, since speed does not depend on them) --
over the generated addresses of bench_predict.py:

  (a) FLOPs per candidate, counted by torch's FlopCounterMode on the batches `inference.encode_texts` runs (its
      order and batch size, each batch padded to its longest text), and without padding (each text alone);
  (b) this CPU's fp32 matmul FLOP/s at the thread count encoding uses: a large square GEMM, and the GEMMs of the
      tower's own layer shapes at the batch it runs;
  (c) the FLOP bound: (b)'s large GEMM / (a) without padding, in candidates/s;
  (d) ours: `encode_texts` candidates/s, tokenisation included; the tokenisation alone is reported too.
  Target: (d) >= 0.5 x (c).

Then, per backbone, a fresh process holding the model and a 100,000-candidate gallery ranks image-sized query
features against it (`AddressLocator.rank`, chunked top-k): its peak RSS, the peak reset just before ranking
(/proc/self/clear_refs) and the process's peak over everything. Target: <= 1.5 GB. (The whole predict path,
images decoded and the gallery encoded in the same process: bench_predict.py.)

    flock /tmp/cpu.lock env PYTHONPATH=. .venv/bin/python bench/bench_gallery.py --json /tmp/gallery.json
    flock /tmp/cpu.lock env PYTHONPATH=. .venv/bin/python bench/bench_gallery.py --backbones effnet-lite0-minilm --candidates 20000

ViT-B/16 encodes every `--vit-every`-th candidate (default 10: 10,000 of 100,000, the same mix of lengths) to keep
the run short; its FLOPs and speed are per candidate of that subset, and its ranking gallery is random features
of the full size (ranking memory and time do not depend on the values).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from bench_predict import current_rss_mb, make_addresses, peak_rss_mb, reset_peak_rss, since_reset_peak_mb  # noqa: E402

PAPER = "ViT-B-16-quickgelu"


# ------------------------------------------------------------------------------------------------ FLOPs
def _register_cpu_attention_flops() -> None:
    """FlopCounterMode knows the CUDA attention kernels but not the CPU one SDPA picks here; same count."""
    from torch.utils.flop_counter import flop_registry, register_flop_formula, sdpa_flop_count

    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if op not in flop_registry and op.default not in flop_registry:
        register_flop_formula(op)(lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v))


def count_flops(model, texts: list[str]) -> tuple[int, dict[str, int]]:
    """(FLOPs, FLOPs by op) of ``model.encode_text(texts)``. nn.MultiheadAttention's fast path (open_clip's text
    tower at inference) is one fused kernel the counter cannot see into, so it is off while counting: the
    same matmuls then run as separate ops."""
    from torch.utils.flop_counter import FlopCounterMode

    _register_cpu_attention_flops()
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model.encode_text(texts)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    return int(counter.get_total_flops()), by_op


def tokenised_batches(model, texts: list[str], batch_tokens: int):
    """The batches `encode_texts` runs, tokenised as it tokenises them: (row indices, token tensor) each, and
    the seconds tokenising took."""
    from addressclip.inference import length_batches, tokenize_texts

    start = time.perf_counter()
    tokens, lengths = tokenize_texts(model, texts)
    seconds = time.perf_counter() - start
    return [(rows.tolist(), tokens[rows, : int(lengths[rows].max())]) for rows in length_batches(lengths, batch_tokens)], seconds


def flops_per_candidate(model, texts: list[str], batches) -> dict:
    """FLOPs of encoding `texts` as our batches pad them, and without any padding. A batch's FLOPs depend only
    on its (texts, padded length) shape, so each distinct shape is counted once (on a real batch of that shape)
    and multiplied by how often it occurs; likewise each distinct text length, on one text (batch of 1)."""
    shapes = Counter(tuple(tokens.shape) for _, tokens in batches)
    example = {}
    for rows, tokens in batches:
        example.setdefault(tuple(tokens.shape), rows)
    padded, by_op = 0, Counter()
    for shape, times in shapes.items():
        total, ops = count_flops(model, [texts[i] for i in example[shape]])
        padded += times * total
        by_op.update({op: times * n for op, n in ops.items()})
    lengths, one_text = Counter(), {}
    for rows, tokens in batches:
        for i, n in zip(rows, model.token_lengths(tokens).tolist()):
            lengths[n] += 1
            one_text.setdefault(n, i)
    unpadded = sum(times * count_flops(model, [texts[one_text[n]]])[0] for n, times in lengths.items())
    tokens_real = sum(n * times for n, times in lengths.items())
    tokens_padded = sum(b * n * times for (b, n), times in shapes.items())
    return {"padded": padded / len(texts), "unpadded": unpadded / len(texts), "by_op": by_op,
            "tokens_per_candidate": tokens_real / len(texts), "padding_share": 1 - tokens_real / tokens_padded,
            "lengths": dict(sorted(lengths.items())), "batch_shapes": len(shapes)}


# ------------------------------------------------------------------------------------------------ GEMMs
def linear_gflops(m: int, k: int, n: int, min_seconds: float = 1.0) -> float:
    """Best fp32 GFLOP/s of F.linear([m, k] x [n, k]^T + bias) -- how every layer of the towers multiplies."""
    x, w, b = torch.randn(m, k), torch.randn(n, k), torch.randn(n)
    with torch.inference_mode():
        F.linear(x, w, b)  # warm-up: first call picks and packs kernels
        best, spent = float("inf"), 0.0
        while spent < min_seconds:
            start = time.perf_counter()
            F.linear(x, w, b)
            took = time.perf_counter() - start
            best, spent = min(best, took), spent + took
    return 2 * m * k * n / best / 1e9


def tower_linears(model) -> Counter:
    """(in, out) of every matrix multiply with a weight in the text tower (q/k/v/out, MLP, projection)."""
    text = model.clip.text if model.hf_text else model.clip.transformer
    shapes = Counter()
    for module in text.modules():
        if isinstance(module, torch.nn.MultiheadAttention):
            shapes[(module.embed_dim, 3 * module.embed_dim)] += 1  # in_proj_weight (out_proj is a Linear)
        elif isinstance(module, torch.nn.Linear):
            shapes[(module.in_features, module.out_features)] += 1
    return shapes


def gemm_rates(model, tokens_per_batch: int) -> dict:
    """The large square GEMM (the bound) and the tower's own layer shapes at `tokens_per_batch` rows; the
    shape mix is their FLOP-weighted rate (total FLOPs / total time, each layer once)."""
    large = max(linear_gflops(n, n, n) for n in (2048, 4096))
    per_shape, flops, seconds = {}, 0.0, 0.0
    for (k, n), times in tower_linears(model).items():
        rate = linear_gflops(tokens_per_batch, k, n, min_seconds=0.5)
        per_shape[f"{tokens_per_batch}x{k} -> {n}"] = round(rate, 1)
        f = 2 * tokens_per_batch * k * n * times
        flops, seconds = flops + f, seconds + f / rate
    return {"large_gemm_gflops": round(large, 1), "tower_shapes_gflops": per_shape,
            "tower_shape_mix_gflops": round(flops / seconds, 1)}


# --------------------------------------------------------------------------------------------- encoding
def measure_backbone(backbone: str, texts: list[str], batch_tokens: int | None, gallery_out: Path | None) -> dict:
    from addressclip.inference import default_batch_tokens, encode_texts
    from addressclip.model import create_model

    model = create_model(backbone).eval()
    batch_tokens = batch_tokens or default_batch_tokens(model.device)
    batches, tokenise_s = tokenised_batches(model, texts, batch_tokens)
    flops = flops_per_candidate(model, texts, batches)
    typical = sorted(tokens.shape[0] * tokens.shape[1] for _, tokens in batches)[len(batches) // 2]
    rates = gemm_rates(model, typical)

    encode_texts(model, texts[:256], batch_tokens)  # warm-up (kernels, allocator)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    gallery = encode_texts(model, texts, batch_tokens)
    encode_s = time.perf_counter() - start
    if gallery_out is not None:
        torch.save(gallery, gallery_out)

    bound = rates["large_gemm_gflops"] * 1e9 / flops["unpadded"]
    ours = len(texts) / encode_s
    return {
        "backbone": backbone, "candidates": len(texts), "batch_tokens": batch_tokens,
        "batches": len(batches), "threads": torch.get_num_threads(),
        "tokens_per_candidate": round(flops["tokens_per_candidate"], 2),
        "padding_share_of_tokens": round(flops["padding_share"], 4),
        "mflops_per_candidate": round(flops["padded"] / 1e6, 1),
        "mflops_per_candidate_unpadded": round(flops["unpadded"] / 1e6, 1),
        "flops_by_op_share": {op: round(n / sum(flops["by_op"].values()), 4) for op, n in flops["by_op"].items()},
        **rates,
        "bound_candidates_per_s": round(bound, 1),
        "bound_at_tower_shapes_candidates_per_s": round(rates["tower_shape_mix_gflops"] * 1e9 / flops["unpadded"], 1),
        "ours_candidates_per_s": round(ours, 1),
        "ours_gflops": round(flops["padded"] * ours / 1e9, 1),
        "ratio_to_bound": round(ours / bound, 3),
        "encode_s": round(encode_s, 1),
        "tokenise_s": round(tokenise_s, 2), "tokenise_candidates_per_s": round(len(texts) / tokenise_s),
        "tokenise_share_of_encode": round(tokenise_s / encode_s, 4),
        "load_average_at_start": round(load, 2), "load_average_at_end": round(os.getloadavg()[0], 2),
    }


# ------------------------------------------------------------------------------------------------ ranking
def rank_memory(backbone: str, gallery_path: Path | None, candidates: int, queries: list[int], k: int) -> dict:
    """In this (fresh) process: the model, the gallery, then each query count ranked against every candidate;
    the peak RSS of each ranking (peak reset just before it) and of the whole process."""
    from addressclip.model import create_model
    from addressclip.predict import AddressLocator

    imports = current_rss_mb()  # torch, open_clip, transformers, timm, pandas, ...: before any model exists
    model = create_model(backbone).eval()
    with_model = current_rss_mb()
    locator = AddressLocator(model, cache_dir=False)
    if gallery_path is not None:
        gallery = torch.load(gallery_path)
    else:  # random unit vectors of the gallery's shape: ranking's memory does not depend on the values
        dim = model.encode_text(["a"]).shape[1]
        gallery = F.normalize(torch.randn(candidates, dim), dim=-1)
    locator.gallery = gallery
    process_peak = peak_rss_mb()  # so far (VmHWM): reset below, before each ranking
    out = {"backbone": backbone, "candidates": gallery.shape[0], "gallery_mb": round(gallery.nbytes / 2**20, 1),
           "gallery_values": "encoded" if gallery_path is not None else "random", "rss_after_imports_mb": round(imports),
           "model_mb": round(with_model - imports), "rss_before_ranking_mb": round(current_rss_mb())}
    for n in queries:
        feats = F.normalize(torch.randn(n, gallery.shape[1]), dim=-1)
        reset_peak_rss()
        start = time.perf_counter()
        locator.rank(feats, k)
        out[f"rank_{n}_queries_ms_per_query"] = round(1000 * (time.perf_counter() - start) / n, 3)
        out[f"rank_{n}_queries_peak_rss_mb"] = round(since_reset_peak_mb())
    out["process_peak_rss_mb"] = round(max([process_peak] + [v for key, v in out.items() if key.endswith("_peak_rss_mb")]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", nargs="+", default=["effnet-lite0-minilm", PAPER])
    ap.add_argument("--candidates", type=int, default=100_000)
    ap.add_argument("--vit-every", type=int, default=10, help="ViT-B/16 encodes every N-th candidate (1: all)")
    ap.add_argument("--batch-tokens", type=int, default=None, help="encode_texts's tokens per batch (default: its own)")
    ap.add_argument("--queries", type=int, nargs="+", default=[200, 4096],
                    help="query counts ranked in the memory check (4096: a full query chunk)")
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--skip-encode", action="store_true", help="only the ranking-memory check")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--_rank", nargs=2, metavar=("BACKBONE", "GALLERY"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._rank:  # the child process of the memory check
        backbone, gallery = args._rank
        print(json.dumps(rank_memory(backbone, Path(gallery) if gallery != "-" else None, args.candidates,
                                     args.queries, args.k)))
        return

    addresses = make_addresses(args.candidates)
    results = {"encode": [], "rank": []}
    with tempfile.TemporaryDirectory(prefix="bench-gallery-") as tmp:
        for backbone in args.backbones:
            every = args.vit_every if backbone == PAPER else 1
            texts = addresses[::every]
            gallery = Path(tmp) / f"{backbone}.pt" if len(texts) == len(addresses) else None
            if not args.skip_encode:
                row = measure_backbone(backbone, texts, args.batch_tokens, gallery)
                row["subset"] = f"every {every}th of {len(addresses):,}" if every > 1 else "all"
                results["encode"].append(row)
                print(json.dumps(row, indent=2), flush=True)
            else:
                gallery = None
            child = subprocess.run(
                [sys.executable, __file__, "--_rank", backbone, str(gallery) if gallery else "-", "--candidates",
                 str(len(addresses)), "-k", str(args.k), "--queries", *map(str, args.queries)],
                check=True, capture_output=True, text=True)
            row = json.loads(child.stdout.strip().splitlines()[-1])
            results["rank"].append(row)
            print(json.dumps(row, indent=2), flush=True)
    for row in results["encode"]:
        print(f"{row['backbone']}: {row['mflops_per_candidate_unpadded']:.0f} MFLOP/candidate "
              f"({row['tokens_per_candidate']:.1f} tokens); GEMM {row['large_gemm_gflops']:.0f} GFLOP/s on "
              f"{row['threads']} threads -> bound {row['bound_candidates_per_s']:.0f}/s; ours "
              f"{row['ours_candidates_per_s']:.0f}/s = {row['ratio_to_bound']:.2f} x bound (target >= 0.5); "
              f"tokenising {row['tokenise_share_of_encode']:.1%} of it")
    for row in results["rank"]:
        ranking = max(v for key, v in row.items() if key.startswith("rank_") and key.endswith("_peak_rss_mb"))
        print(f"{row['backbone']}: ranking {row['candidates']:,} candidates, peak RSS {ranking} MB while ranking, "
              f"{row['process_peak_rss_mb']} MB over the process (model built, gallery loaded; target <= 1536 MB)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
