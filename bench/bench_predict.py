"""Prediction throughput and memory: a folder of images ranked against 100,000 candidate addresses.

Measures, in one process: encoding the candidate side once (and reading it back from the cache), predictions
per second over the folder against the large candidate list and against a small one (the difference is the
ranking cost), and the peak resident memory of each phase (the kernel's record reset between phases) and
of the whole predict path. Without --checkpoint it uses the newest finished run,
or an untrained default model when there is none (speed and memory do not depend on the weights).

    .venv/bin/python bench/bench_predict.py                       # ~200 generated 640x480 JPEGs, 100,000 addresses
    .venv/bin/python bench/bench_predict.py --images photos/ --checkpoint outputs/runs/demo --candidates 20000
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def peak_rss_mb() -> float:
    """Peak RSS of this process so far. The kernel's VmHWM belongs to this process image; getrusage's ru_maxrss
    survives execve, so a child started by a larger parent (bench_gallery.py's ranking check) would report the
    parent's peak."""
    try:
        return since_reset_peak_mb()
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> bool:
    """Start the kernel's peak-RSS record of this process afresh (/proc/self/clear_refs, Linux >= 4.0), so that
    a phase's own peak can be read (`since_reset_peak_mb`); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def since_reset_peak_mb() -> float:
    """Peak RSS since the last `reset_peak_rss` (VmHWM; getrusage's peak is reset with it)."""
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM:")).split()[1]) / 1024


class PhasePeaks:
    """Peak RSS of each phase of a run, the record reset as a phase starts; the run's peak is the largest."""

    def __init__(self):
        self.peaks: dict[str, int] = {}
        self.resets = reset_peak_rss()

    def end(self, phase: str) -> None:
        self.peaks[phase] = round(since_reset_peak_mb() if self.resets else peak_rss_mb())
        reset_peak_rss()

    @property
    def overall(self) -> int:
        return max(self.peaks.values())


def make_images(folder: Path, n: int, seed: int = 0) -> Path:
    """`n` street-photo-sized JPEGs (640 x 480) of smooth random colour fields."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize((640, 480), Image.BILINEAR).save(folder / f"img_{i:04d}.jpg", quality=90)
    return folder


# Real central-Helsinki street names, so the generated addresses tokenise like the datasets' ones.
STREET_NAMES = """Aleksanterinkatu Annankatu Arkadiankatu Bulevardi Eerikinkatu Eteläesplanadi Fabianinkatu
Fredrikinkatu Hallituskatu Helenankatu Iso Roobertinkatu Kaisaniemenkatu Kaivokatu Kalevankatu Kampinkuja
Kanavakatu Kasarmikatu Keskuskatu Kluuvikatu Kolmas linja Korkeavuorenkatu Kristianinkatu Laivurinkatu
Lapinlahdenkatu Liisankatu Lönnrotinkatu Malminkatu Mannerheimintie Mariankatu Meritullinkatu Mikonkatu
Museokatu Nervanderinkatu Pieni Roobertinkatu Pohjoisesplanadi Pohjoisranta Postikatu Punavuorenkatu
Rautatientori Runeberginkatu Ruoholahdenkatu Sanomatalo Siltasaarenkatu Simonkatu Snellmaninkatu
Sofiankatu Tehtaankatu Töölönkatu Unioninkatu Uudenmaankatu Vilhonkatu Vironkatu Vuorikatu Yliopistonkatu
Yrjönkatu Albertinkatu Ratakatu Pursimiehenkatu Merimiehenkatu Ludviginkatu""".replace("Iso R", "Iso_R").replace(
    "Kolmas l", "Kolmas_l").replace("Pieni R", "Pieni_R").split()


def make_addresses(n: int) -> list[str]:
    """`n` distinct address strings in the datasets' form ("A & B, Helsinki 00100")."""
    names = [s.replace("_", " ") for s in STREET_NAMES]
    pairs = [(a, b) for a in names for b in names if a != b]
    out = []
    for i in range(n):
        a, b = pairs[i % len(pairs)]
        out.append(f"{a} & {b}, Helsinki {100 + 10 * (i // len(pairs)):05d}")
    return out


def checkpoint_for(args, scratch: Path) -> Path:
    from addressclip.runs import finished_runs, save_checkpoint

    if args.checkpoint:
        return Path(args.checkpoint)
    found = [r for r in finished_runs() if (r / "model.pt").exists()]
    if found:
        return found[0]
    from addressclip.model import create_model

    model = create_model(train_text="proj")
    save_checkpoint(scratch / "untrained" / "model.pt", {"model": model.clip.state_dict(), "spec": model.spec.to_dict(),
                                                         "config": {}})
    return scratch / "untrained"


def timed_predict(locator, folder: Path, k: int, repeats: int) -> tuple[float, int]:
    """Best of `repeats` passes over the folder (the machine is shared: the best pass is the least disturbed),
    after a warm-up batch of the full batch size (first calls build the convolution kernels per shape)."""
    locator.predict(sorted(folder.iterdir())[: locator.batch_size], k=k)
    best, n = 0.0, 0
    for _ in range(repeats):
        start = time.perf_counter()
        n = len(locator.predict(folder, k=k))
        best = max(best, n / (time.perf_counter() - start))
    return best, n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="run folder or model.pt (default: newest run, else untrained)")
    ap.add_argument("--images", default=None, help="folder of images (default: generate --n-images JPEGs)")
    ap.add_argument("--n-images", type=int, default=200)
    ap.add_argument("--candidates", type=int, default=100_000)
    ap.add_argument("--small", type=int, default=100, help="size of the small candidate list for comparison")
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2, help="timed passes over the folder; the best is reported")
    ap.add_argument("--cache-dir", default=None, help="keep the candidate-embedding cache here (default: a temp folder); "
                                                     "a second run then reads the 100k gallery back instead of encoding it")
    args = ap.parse_args()

    from addressclip.predict import AddressLocator

    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        scratch = Path(tmp)
        folder = Path(args.images) if args.images else make_images(scratch / "images", args.n_images)
        addresses = make_addresses(args.candidates)
        checkpoint = checkpoint_for(args, scratch)
        cache_dir = Path(args.cache_dir) if args.cache_dir else scratch / "cache"
        setup_peak = round(peak_rss_mb())  # imports, images, addresses, an untrained checkpoint: before the predict path
        phases = PhasePeaks()
        locator = AddressLocator.from_checkpoint(checkpoint, candidates=addresses[: args.small], device="cpu",
                                                 cache_dir=cache_dir, batch_size=args.batch_size, progress=True)
        rss_model = current_rss_mb()
        phases.end("load_model")
        small_ips, n = timed_predict(locator, folder, args.k, args.repeats)
        phases.end(f"predict_{args.small}_candidates")

        encoded = locator.set_candidates(addresses)  # cold: encoded once and written to the cache (unless kept)
        rss_gallery = current_rss_mb()
        phases.end("encode_gallery" if not encoded.from_cache else "read_gallery")
        large_ips, _ = timed_predict(locator, folder, args.k, args.repeats)
        phases.end(f"predict_{len(addresses)}_candidates")
        cached = locator.set_candidates(addresses)   # warm: read back from the cache file
        assert cached.from_cache
        phases.end("reread_gallery")
        feats = locator.embed_images(sorted(folder.iterdir())[: args.batch_size])[1]
        start = time.perf_counter()
        locator.rank(feats, args.k)  # the ranking alone: chunked top-k against every candidate
        rank_ms = 1000 * (time.perf_counter() - start) / len(feats)
        phases.end("rank_alone")

        result = {
            "checkpoint": str(checkpoint), "images": n, "candidates": len(addresses), "k": args.k,
            "image_size": locator.model.image_size, "torch_threads": __import__("torch").get_num_threads(),
            "gallery_encode_s": None if encoded.from_cache else round(encoded.seconds, 1),
            "gallery_texts_per_s": None if encoded.from_cache else round(len(addresses) / encoded.seconds, 1),
            "gallery_cache_read_s": round(cached.seconds, 2),
            "cache_file_mb": round(cached.path.stat().st_size / 2**20, 1),
            f"predictions_per_s_{args.small}_candidates": round(small_ips, 1),
            f"predictions_per_s_{len(addresses)}_candidates": round(large_ips, 1),
            "rank_ms_per_image": round(rank_ms, 2),
            "rss_after_model_mb": round(rss_model), "rss_with_gallery_mb": round(rss_gallery),
            "peak_rss_mb": phases.overall,
            "peak_rss_mb_by_phase": phases.peaks, "peak_rss_mb_setup": setup_peak,
        }
    print(json.dumps(result, indent=2))
    how = "came from the kept cache" if encoded.from_cache else f"encoded once in {encoded.seconds:.0f}s"
    print(f"{n} images: {large_ips:.1f} predictions/s against {len(addresses):,} candidates "
          f"({small_ips:.1f}/s against {args.small}); candidates {how}, read back from cache in "
          f"{cached.seconds:.2f}s; peak RSS {result['peak_rss_mb']} MB (target 1536 MB)")


if __name__ == "__main__":
    main()
