"""The one inference path: a trained model from a run, candidate texts and images encoded, candidates ranked.

Evaluation (`evaluate`), prediction (`predict.AddressLocator`), the baselines' frozen features (`features`) and
the figures (`visualise`) all call these functions, so a photo is the same input, an address the same vector
and a ranking the same order everywhere. Images are decoded by the one decoder, `data.open_image`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from . import threads
from .config import check_device
from .errors import CheckpointError, DeviceUnavailable
from .freezing import frozen_text_trunk

# The [images, candidates] score block is bounded over images and candidates: at most 1024 x 16384 float32
# (64 MB), whatever the sizes. At 4096 x 16384 (256 MB, and held twice while the next block was made) ranking
# 4096 images against 100,000 candidates added 545 MB to the peak RSS, for no speed (bench/bench_gallery.py).
QUERY_CHUNK = 1024     # images ranked at once
GALLERY_CHUNK = 16384  # candidates scored at once


def resolve_device(name: str = "auto") -> str:
    """"auto" -> "cuda" when available, else "cpu"; an unknown name, or a CUDA device asked for without CUDA,
    is an error."""
    name = str(name)  # a torch.device too
    check_device(name)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailable(f"device {name!r} requested but CUDA is not available; valid here: auto, cpu")
    return name


def load_model(source: str | Path | None = None, device: str = "cpu", dataset: str | Path | None = None,
               **spec_overrides):
    """A trained model from a run name under outputs/runs, a run folder or a model.pt (None: the newest
    finished run on `dataset`). The checkpoint holds every weight: the `pretrained` file the run started from is
    recorded in the spec but not read again. ``model.checkpoint`` is the model.pt read and ``model.train_config``
    the run's training configuration. `spec_overrides` change what trains (e.g. to start a new run from it)."""
    from .model import create_model
    from .runs import load_checkpoint, resolve_run

    where = resolve_run(None if source is None else str(source), dataset=None if dataset is None else str(dataset))
    model_pt = where / "model.pt" if where.is_dir() else where
    device = resolve_device(device)
    try:
        state = load_checkpoint(model_pt)
    except RuntimeError as exc:
        raise CheckpointError(checkpoint_problem(model_pt, exc)) from None  # torch's text would suggest unpickling it
    if not isinstance(state.get("spec"), dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"checkpoint {model_pt} is not an addressclip model (it holds {sorted(state)[:6]}, not "
                              "'model' and 'spec'); give a run folder or the model.pt that training wrote")
    if "frozen_digest" in state:
        raise CheckpointError(f"checkpoint {model_pt} is an epoch's resume checkpoint: it holds only the weights that "
                              f"train, not the frozen ones; give the run folder or its model.pt")
    spec = {**state["spec"], **spec_overrides}
    model = create_model(device=device, **{**spec, "pretrained": None})  # weights: below
    model.spec.pretrained = spec.get("pretrained")
    try:
        model.clip.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {model_pt}: its weights do not fit its backbone {spec.get('backbone')!r} "
                              f"({' '.join(str(exc).split())[:300]})") from None
    model.checkpoint, model.train_config = model_pt, state.get("config") or {}
    return model


def checkpoint_problem(path: Path, exc: BaseException) -> str:
    """One line on why a checkpoint could not be read, naming the file. Never PyTorch's own hint to load it with
    ``weights_only=False``: that would run whatever code the file carries."""
    import pickle

    cause = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(cause)
    if isinstance(cause, pickle.UnpicklingError) and "weights only" in text.lower():
        import re

        found = re.search(r"GLOBAL (\S+)", text)
        what = f" (e.g. {found.group(1)})" if found else ""
        return (f"checkpoint {path} holds pickled Python objects{what}, not only tensors and plain values; it is not "
                "loaded, since unpickling can run code: give a run folder or the model.pt that addressclip training wrote")
    if isinstance(cause, EOFError) or (path.exists() and path.stat().st_size == 0):
        return f"checkpoint {path} is empty or cut short; give a run folder or the model.pt that addressclip training wrote"
    if isinstance(cause, PermissionError):
        return f"checkpoint {path} cannot be read: permission denied"
    if cause is not exc and type(cause).__name__ == "DamagedFile" and "weights_only" not in text:
        return f"checkpoint {text}"  # our own checks: a checksum that does not match, or not a dict
    if "zip archive" in text or "central directory" in text:
        return f"checkpoint {path} is truncated or damaged (not a complete PyTorch file); copy it again or retrain"
    return f"checkpoint {path} is not a PyTorch checkpoint this project wrote ({type(cause).__name__})"


# ------------------------------------------------------------------------------------------------ encoding
def default_batch_tokens(device: torch.device | str) -> int:
    """Tokens per text batch (`encode_texts`). On a CPU, batches small enough that a layer's activations stay in
    cache: of 512-3072 tokens on 2 cores, 768 was ViT-B/16's fastest and within 5% of MiniLM's; at 256 texts a
    batch (about 5,000 tokens) the elementwise ops and copies between the matmuls ran out of cache and ViT-B/16
    encoded a third slower (bench/bench_gallery.py). On an accelerator, large batches (not measured here: at
    least the 256 texts a batch held before)."""
    return 768 if torch.device(device).type == "cpu" else 16384


@torch.inference_mode()
def encode_texts(model, texts: list[str], batch_tokens: int | None = None, progress: bool = False,
                 desc: str = "texts") -> torch.Tensor:
    """Normalised text features [N, D] (float32, on the model's device); a repeated text is encoded once.

    Every text is tokenised once; texts are sorted by length in tokens and encoded in batches of about
    `batch_tokens` tokens (`default_batch_tokens`), each padded only to its longest text, so a batch carries
    almost no padding (sorted by characters, 13-17% of the tokens of a 100,000-address gallery were padding).
    Padding never changes a text's features -- MiniLM masks it, and CLIP's causal tower reads the EOT token,
    which comes before any padding -- so how texts are batched changes only float rounding. When the model
    caches its frozen text trunk per string, batches are encoded from their strings: the cache does the work."""
    unique = list(dict.fromkeys(texts))
    if not unique:
        raise ValueError("no texts to encode")
    by_string = frozen_text_trunk(model) and model.cache_frozen_text
    tokens, lengths = tokenize_texts(model, unique)
    out = None  # filled in place: no list of batches to concatenate (a second copy at 100k candidates)
    batches = length_batches(lengths, batch_tokens or default_batch_tokens(model.device))
    for rows in tqdm(batches, desc=desc, disable=not progress, leave=False):
        if by_string:
            feats = model.encode_text([unique[i] for i in rows]).float()
        else:
            feats = model.encode_tokens(tokens[rows, : int(lengths[rows].max())]).float()
        if out is None:
            out = torch.empty(len(unique), feats.shape[1], device=feats.device)
        out[rows.to(feats.device)] = feats
    if len(unique) < len(texts):  # repeated texts: each row takes its text's features
        row = {t: i for i, t in enumerate(unique)}
        out = out[torch.as_tensor([row[t] for t in texts], device=out.device)]
    return out


def tokenize_texts(model, texts: list[str], chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [N, longest], padded after each text; each text's length in tokens). In chunks: the tokenizers
    pad every text to the context length (77 for CLIP) before `model.tokenize` trims the unused columns."""
    parts = [model.tokenize(texts[i : i + chunk]) for i in range(0, len(texts), chunk)]
    tokens = torch.full((len(texts), max(p.shape[1] for p in parts)), model.pad_id, dtype=parts[0].dtype)
    for i, part in zip(range(0, len(texts), chunk), parts):
        tokens[i : i + len(part), : part.shape[1]] = part
    return tokens, model.token_lengths(tokens)


def length_batches(lengths: torch.Tensor, batch_tokens: int) -> list[torch.Tensor]:
    """Row indices of the batches `encode_texts` runs: rows sorted by length (ties in input order), each batch
    as many rows as fit in `batch_tokens` once padded to its longest row (at least one row)."""
    order = torch.argsort(lengths, stable=True)
    longest = lengths[order].tolist()  # ascending: a batch's last row is its longest
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end + 1 - start) * longest[end] <= batch_tokens:
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def collate_readable(batch: list[tuple]) -> tuple[torch.Tensor | None, list[int], dict[int, str]]:
    """Collate (image, row) items, and (None, row, error) items of unreadable images, into (stacked images,
    their rows, {row: error})."""
    good = [item for item in batch if item[0] is not None]
    errors = {int(item[1]): item[2] for item in batch if item[0] is None}
    images = torch.stack([item[0] for item in good]) if good else None
    return images, [int(item[1]) for item in good], errors


@torch.inference_mode()
def encode_images(model, rows: Dataset, batch_size: int = 64, num_workers: int | None = None, progress: bool = False
                  ) -> tuple[torch.Tensor, list[int], dict[int, str]]:
    """Normalised image features of `rows` (`data.ImageRows`): ([n, D] float32 on the model's device, the rows
    they belong to, {row: reason} of images that could not be read, when the rows report instead of raising).
    `num_workers` None: `threads.loader_workers` (none on a CPU, where the encoder needs every core)."""
    loader = DataLoader(rows, batch_size=batch_size, shuffle=False, collate_fn=collate_readable,
                        **threads.loader_options(model.device, num_workers, batches=-(-len(rows) // batch_size)))
    feats, kept, failed = [], [], {}
    for images, which, errors in tqdm(loader, desc="images", disable=not progress, leave=False):
        failed.update(errors)
        if images is not None:
            feats.append(model.encode_image(images.to(model.device, non_blocking=True)).float())
            kept += which
    out = torch.cat(feats) if feats else torch.empty(0, 0, device=model.device)
    return out, kept, failed


@torch.inference_mode()
def encode_after_frozen(model, frozen: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Image features from the cached outputs of the frozen image layers (`frozen_layers`), in batches."""
    return torch.cat([model.encode_image_after_frozen(frozen[i : i + batch_size].to(model.device)).float()
                      for i in range(0, len(frozen), batch_size)])


# ------------------------------------------------------------------------------------------------- ranking
def topk(queries: torch.Tensor, gallery: torch.Tensor, k: int, query_chunk: int = QUERY_CHUNK,
         gallery_chunk: int = GALLERY_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, indices) [n, min(k, A)] of the top-k dot products of each query with the gallery, best first.

    Scores exist for one [query_chunk, gallery_chunk] block at a time and a running top-k is merged across
    gallery blocks, so memory does not grow with the number of candidates."""
    return topk_by(lambda q, j: q @ gallery[j : j + gallery_chunk].T, queries, gallery.shape[0], k,
                   query_chunk, gallery_chunk)


def topk_by(score: Callable[[torch.Tensor, int], torch.Tensor], queries: torch.Tensor, candidates: int, k: int,
            query_chunk: int = QUERY_CHUNK, gallery_chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`topk` for any scoring: ``score(query_block, j)`` gives the scores of candidates j.. j+gallery_chunk
    (all candidates when `gallery_chunk` is None) for a block of queries."""
    k = min(int(k), candidates)
    if k < 1:
        raise ValueError(f"k must be at least 1 and there must be candidates (k={k}, {candidates} candidates)")
    step = gallery_chunk or candidates
    all_scores, all_idx = [], []
    with torch.no_grad():
        for i in range(0, len(queries), query_chunk):
            q = queries[i : i + query_chunk]
            best_s = best_i = None
            for j in range(0, candidates, step):
                block = score(q, j)
                s, idx = block.topk(min(k, block.shape[1]), dim=1)
                del block  # freed before the next block is made: one block in memory, not two
                idx = idx + j
                if best_s is not None:  # merge with the best so far
                    s, pos = torch.cat([best_s, s], dim=1).topk(min(k, best_s.shape[1] + s.shape[1]), dim=1)
                    idx = torch.cat([best_i, idx], dim=1).gather(1, pos)
                best_s, best_i = s, idx
            all_scores.append(best_s)
            all_idx.append(best_i)
    if not all_scores:
        return torch.empty(0, k), torch.empty(0, k, dtype=torch.long)
    return torch.cat(all_scores), torch.cat(all_idx)


def timed_ranking(rank: Callable[[torch.Tensor, int], tuple], queries: torch.Tensor, k: int, repeats: int = 3):
    """(rank(queries, k), ms per query): the best of `repeats` passes over all queries, divided by their number.
    Every method's ``query_ms`` is measured by this one function."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = rank(queries, k)
        best = min(best, time.perf_counter() - start)
    return result, (1000 * best / len(queries) if len(queries) else None)
