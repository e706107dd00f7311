"""Two-stage baselines, Image -> GPS -> Address: the pipeline AddressCLIP argues against.

Stage 1 predicts locations (visual place recognition by retrieval, or a GeoCLIP-style image-to-GPS model);
stage 2 reverse-geocodes them to sub-street addresses. The ranking of an image is the distinct addresses of its
top locations in order; when those give fewer than k, the remaining candidates follow in zero-shot (gallery
cosine) order, with scores placed below every located one.

Reverse geocoding (`Geocoder`): the address of the nearest sub-street segment of the dataset's map
(``ds.segments``, metric CRS). Datasets without segments (real data may lack them) fall back to the address of
the nearest labelled image of the database splits (the train split by default). Only candidate addresses
(``ds.addresses``) are on the map, so every answer is rankable. Near junctions the nearest segment can differ from the label, which is the ambiguity the paper names;
`notes` reports how often the geocoder agrees with the train labels.

Database (``database_splits``): the non-query images with known GPS that stage 1 searches (retrieval) or whose
locations form the GPS gallery (GeoCLIP), and whose labels the segment-less geocoder reads. Default: the
dataset card's ``retrieval_database`` (Pitts-IAL: ``["train", "val"]``, the released pitts_database.json images
being our val split, as the paper's two-stage methods search every non-query image), else ``["train"]``. The test
split is never in it. Only train images are ever *trained* on. When val is in the database, val cannot fairly
select hyperparameters against that database (each val image would find itself): selection on val uses the
database without val (train only), and the test split is then ranked against the full database. The result's
``chosen["database"]`` and ``notes`` say which database was used.

Both are deterministic for a seed on CPU (exact faiss search; seeded torch).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..datasets.format import IALDataset
from ..features import FeatureBank
from ..inference import topk_by
from . import BaselineResult
from .common import CHUNK, NO_VAL_NOTE, BestOnVal, finish, has_val, nbytes, rows_per_chunk, train_epochs, val_figures


# --- reverse geocoding --------------------------------------------------------------------------------------------
DATABASE_SPLITS = ("train", "val")


def database_splits_of(ds: IALDataset, database_splits: Sequence[str] | None = None) -> list[str]:
    """The splits forming the retrieval database: `database_splits`, else the card's ``retrieval_database``,
    else ``["train"]``; in train, val order, validated (test holds the queries and is never in it)."""
    chosen = database_splits if database_splits is not None else ds.card.get("retrieval_database", ["train"])
    chosen = [chosen] if isinstance(chosen, str) else list(chosen)
    bad = [s for s in chosen if s not in DATABASE_SPLITS]
    if bad or not chosen:
        raise ValueError(f"database splits must be a non-empty subset of {list(DATABASE_SPLITS)} (test holds the "
                         f"queries), got {chosen}")
    return [s for s in DATABASE_SPLITS if s in chosen]


def selection_database(database: Sequence[str]) -> list[str]:
    """The database used while choosing on val: without val (each val image would retrieve itself)."""
    return [s for s in database if s != "val"] or ["train"]


class Geocoder:
    """Points (easting, northing) in the dataset's metric CRS -> address ids into ``ds.addresses``. A point
    equidistant from several segments (a junction) gets one of them, by the tree's order. Without segments, the
    address of the nearest labelled image of `splits` (default train)."""

    def __init__(self, ds: IALDataset, splits: Sequence[str] = ("train",)):
        self.addresses = ds.addresses
        ids = {a: i for i, a in enumerate(self.addresses)}
        segments = ds.segments
        if segments is not None:
            segments = segments[segments["address"].isin(ids) & segments.geometry.notna() & ~segments.geometry.is_empty]
        if segments is not None and len(segments):
            from shapely import STRtree

            self.source = "nearest sub-street segment"
            self._tree = STRtree(np.asarray(segments.geometry.values))
            self._ids = np.array([ids[a] for a in segments["address"]])
            self.map_bytes = int(sum(len(g.wkb) for g in segments.geometry.values))
        else:
            from scipy.spatial import cKDTree

            splits = list(splits)
            labelled = pd.concat([ds.split(s) for s in splits], ignore_index=True)
            if not len(labelled):
                raise ValueError(f"reverse geocoding needs segments or labelled images in {splits}")
            self.source = ("nearest training image (no segments)" if splits == ["train"]
                           else f"nearest labelled {'+'.join(splits)} image (no segments)")
            xy = labelled[["easting", "northing"]].to_numpy(float)
            self._tree = cKDTree(xy)
            self._ids = np.array([ids[a] for a in labelled["address"]])
            self.map_bytes = int(xy.nbytes + self._ids.nbytes)

    def __call__(self, points_xy) -> np.ndarray:
        points = np.asarray(points_xy, dtype=float).reshape(-1, 2)
        out = np.empty(len(points), dtype=np.int64)
        if not len(points):
            return out
        if hasattr(self._tree, "query_nearest"):  # shapely STRtree
            import shapely

            src, hit = self._tree.query_nearest(shapely.points(points), all_matches=False)
            out[src] = self._ids[hit]
        else:
            out[:] = self._ids[self._tree.query(points)[1]]
        return out


def reverse_geocode(points_xy, ds: IALDataset, splits: Sequence[str] = ("train",)) -> list[str]:
    """Address of each point: the nearest sub-street segment's in ``ds.segments``; without segments, the
    address of the nearest labelled image of `splits`. Build a `Geocoder` once instead when geocoding repeatedly."""
    geocoder = Geocoder(ds, splits)
    return [geocoder.addresses[i] for i in geocoder(points_xy)]


def geocoder_agreement(geocoder: Geocoder, bank: FeatureBank) -> float:
    """% of train images whose reverse-geocoded location equals their address label."""
    if not len(bank.labels["train"]):
        return float("nan")
    return float((geocoder(bank.coords["train"].numpy()) == bank.labels["train"].numpy()).mean() * 100)


def distinct_ranking(addr: np.ndarray, score: np.ndarray, feats: torch.Tensor, gallery: torch.Tensor, k: int):
    """Per row, the distinct addresses of `addr` [n, m] in order (each scored by its first, best location's
    score), padded to k with the other candidates by gallery cosine, scored below every located address."""
    top = np.empty((len(addr), k), dtype=np.int64)
    out = np.empty((len(addr), k), dtype=np.float32)
    for r in range(len(addr)):
        ranked, scores = [], []
        for a, s in zip(addr[r], score[r]):
            if a not in ranked:
                ranked.append(int(a))
                scores.append(float(s))
                if len(ranked) == k:
                    break
        if len(ranked) < k:
            cos = (feats[r] @ gallery.T).numpy()
            floor = (min(scores) if scores else 0.0) - 3.0  # cosines >= -1: all padded scores stay below
            for a in np.argsort(-cos, kind="stable"):
                if int(a) not in ranked:
                    ranked.append(int(a))
                    scores.append(floor + float(cos[a]))
                    if len(ranked) == k:
                        break
        top[r], out[r] = ranked, scores
    return top, out


# --- visual place recognition by retrieval ------------------------------------------------------------------------
def search(index, feats: torch.Tensor, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, database rows) [n, m] of each query's `m` nearest database images, `CHUNK` queries per
    faiss call."""
    found = [index.search(np.ascontiguousarray(feats[i : i + CHUNK].numpy(), dtype=np.float32), m)
             for i in range(0, len(feats), CHUNK)]
    if not found:
        return np.empty((0, m), dtype=np.float32), np.empty((0, m), dtype=np.int64)
    return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])


def run_retrieval(bank: FeatureBank, model=None, seed: int = 0, k: int = 5, neighbours: int | None = None,
                  database_splits: Sequence[str] | None = None) -> BaselineResult:
    """Visual place recognition by nearest-neighbour retrieval (the SALAD/AnyLoc setting of the paper's
    two-stage comparison, here on the backbone's own features): exact inner-product search (faiss IndexFlatIP
    on the L2-normalised features of the database images) for `neighbours` (default 10*k) images, then reverse
    geocoding of their locations, done at query time (so timed).

    database_splits: the images searched (module docstring): default the card's ``retrieval_database``, else
    train. Nothing is tuned, so val is not used for selection; should a setting ever be chosen on val while val
    is in the database, choose it against `selection_database` (train) and rank test against the full database.

    storage = the index (database features) + the database coordinates; the map the geocoder needs is not counted
    (notes give its size). query_ms = search + reverse geocoding + de-duplication."""
    import faiss

    database = database_splits_of(bank.ds, database_splits)
    keys = np.ascontiguousarray(torch.cat([bank.image[s] for s in database]).numpy(), dtype=np.float32)
    if not len(keys):
        raise ValueError(f"retrieval needs database images; {'+'.join(database)} is empty")
    index = faiss.IndexFlatIP(bank.dim)
    index.add(keys)
    coords = torch.cat([bank.coords[s] for s in database]).numpy()
    geocoder = Geocoder(bank.ds, database)
    gallery = bank.gallery
    m = min(neighbours or 10 * k, index.ntotal)

    def rank(feats: torch.Tensor, kk: int):
        sims, nn_idx = search(index, feats, m)
        addr = geocoder(coords[nn_idx.ravel()]).reshape(nn_idx.shape)
        return distinct_ranking(addr, sims, feats, gallery, kk)

    storage = int(faiss.serialize_index(index).nbytes) + coords.nbytes
    notes = (f"database: {'+'.join(database)} ({index.ntotal} images); "
             f"reverse geocoding: {geocoder.source}, agreeing with {geocoder_agreement(geocoder, bank):.1f}% of the "
             f"train labels; map not counted in storage: {geocoder.map_bytes} bytes")
    return finish("two-stage-retrieval", bank, rank, k, {"neighbours": m, "database": "+".join(database)}, storage, notes)


# --- GeoCLIP-style image-to-GPS model -----------------------------------------------------------------------------
class CityFrame:
    """Maps metric coordinates to [-1, 1] over the training extent (aspect kept); the offset is removed in
    float64 first, since UTM northings (~10^6 m) lose metres in float32."""

    def __init__(self, xy: np.ndarray):
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        self.centre = (lo + hi) / 2
        self.half = max(float((hi - lo).max()) / 2, 1.0)

    def __call__(self, xy: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((np.asarray(xy, dtype=np.float64) - self.centre) / self.half, dtype=torch.float32)


class LocationEncoder(nn.Module):
    """GeoCLIP's location encoder (Vivanco et al. 2023): for each scale sigma, random Fourier features
    ``[cos 2*pi*B x, sin 2*pi*B x]`` with fixed ``B ~ N(0, sigma^2)``, then an MLP per scale; the branch outputs
    are summed, so coarse and fine scales both shape the embedding."""

    def __init__(self, out_dim: int, sigmas=(1.0, 16.0, 256.0), frequencies: int = 128, hidden: int = 256,
                 generator: torch.Generator | None = None):
        super().__init__()
        b = torch.randn(len(sigmas), frequencies, 2, generator=generator)
        self.register_buffer("B", b * torch.as_tensor(sigmas, dtype=torch.float32)[:, None, None])
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * frequencies, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                          nn.Linear(hidden, out_dim))
            for _ in sigmas)

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        phase = 2 * math.pi * torch.einsum("nc,sfc->snf", xy, self.B)
        enc = torch.cat([phase.cos(), phase.sin()], dim=-1)
        return F.normalize(sum(branch(e) for branch, e in zip(self.branches, enc)), dim=-1)


class GeoCLIPHead(nn.Module):
    """Image side: a small MLP on the frozen image feature, and CLIP's learnable temperature."""

    def __init__(self, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(f), dim=-1)

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.clamp(max=math.log(100)).exp()


def gps_gallery(train_xy: np.ndarray, grid_step_m: float | None) -> np.ndarray:
    """The distinct training locations, plus a regular grid over their extent every `grid_step_m` metres."""
    points = np.unique(train_xy, axis=0)
    if grid_step_m:
        lo, hi = train_xy.min(axis=0), train_xy.max(axis=0)
        gx, gy = np.meshgrid(np.arange(lo[0], hi[0] + grid_step_m, grid_step_m),
                             np.arange(lo[1], hi[1] + grid_step_m, grid_step_m))
        points = np.concatenate([points, np.stack([gx.ravel(), gy.ravel()], axis=1)])
    return points


def run_geoclip(bank: FeatureBank, model=None, seed: int = 0, k: int = 5, sigmas=(1.0, 16.0, 256.0),
                epochs: int = 10, batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-4,
                frequencies: int = 128, hidden: int = 256, grid_step_m: float | None = None,
                locations: int | None = None, database_splits: Sequence[str] | None = None) -> BaselineResult:
    """GeoCLIP-style two-stage baseline: an image head on the frozen features and a multi-scale Fourier location
    encoder (coordinates normalised to the city's extent) trained with InfoNCE between train images and their
    locations, learnable temperature. Images of one place share a location, so the negatives of a batch are its
    *distinct* other locations (no false negatives); GeoCLIP's GPS queue and coordinate noise are left out.

    At test the GPS gallery (the distinct locations of the database splits, plus a grid over their extent if
    `grid_step_m`) is encoded once; an image's top `locations` (default 10*k) gallery points are reverse-geocoded,
    their distinct addresses forming the ranking. The encoder trains on train images only, whatever the database.
    The epoch is chosen on val (SSA-1 of that whole pipeline) against the gallery and geocoder of the database
    *without* val (`selection_database`: val's own locations would otherwise be in the gallery it is scored on);
    the test split is then ranked against the full database's gallery, encoded by the chosen epoch's encoder.

    storage = the gallery coordinates + their encoded features + the image head (the location encoder is not
    needed once the gallery is encoded)."""
    train_xy = bank.coords["train"].numpy()
    if not len(train_xy):
        raise ValueError("GeoCLIP needs training images")
    database = database_splits_of(bank.ds, database_splits)
    select_db = selection_database(database)
    frame = CityFrame(train_xy)
    places, place_of = np.unique(train_xy, axis=0, return_inverse=True)
    places_t, place_of = frame(places), torch.as_tensor(place_of.reshape(-1), dtype=torch.long)
    x = bank.image["train"].clone()  # clone: inference-mode features cannot be saved for backward

    def db_gallery(splits):
        xy = np.concatenate([bank.coords[s].numpy() for s in splits])
        return gps_gallery(xy if len(xy) else train_xy, grid_step_m)

    select_xy, gallery_xy = db_gallery(select_db), db_gallery(database)
    select_t, gallery_t = frame(select_xy), frame(gallery_xy)
    select_geocoder, geocoder, text_gallery = Geocoder(bank.ds, select_db), Geocoder(bank.ds, database), bank.gallery

    torch.manual_seed(seed)
    head = GeoCLIPHead(bank.dim)
    encoder = LocationEncoder(bank.dim, sigmas, frequencies, hidden, torch.Generator().manual_seed(seed))

    def loss_fn(idx):
        batch_places, target = torch.unique(place_of[idx], return_inverse=True)
        logits = head.scale * head(x[idx]) @ encoder(places_t[batch_places]).T
        return F.cross_entropy(logits, target)

    def ranker(loc_feats: torch.Tensor, img_head: GeoCLIPHead, xy: np.ndarray, geo: Geocoder):
        m = min(locations or 10 * k, len(xy))

        def rank(feats: torch.Tensor, kk: int):
            sims, idx = topk_by(lambda q, _: img_head(q) @ loc_feats.T, feats, len(loc_feats), m,
                                query_chunk=rows_per_chunk(len(loc_feats)))
            addr = geo(xy[idx.numpy().ravel()]).reshape(idx.shape)
            return distinct_ranking(addr, sims.numpy(), feats, text_gallery, kk)
        return rank

    best = BestOnVal()

    def after_epoch(epoch):  # (no dropout or batch-norm here: train and eval modes agree)
        with torch.no_grad():
            loc_feats = encoder(select_t)
        best.offer(val_figures(ranker(loc_feats, head, select_xy, select_geocoder), bank, k), {"epoch": epoch},
                   (head.state_dict(), encoder.state_dict()))

    decay = [p for n, p in head.named_parameters() if n != "log_scale"] + list(encoder.parameters())
    params = [{"params": decay}, {"params": [head.log_scale], "weight_decay": 0.0}]  # no decay on the temperature
    train_epochs(params, loss_fn, len(x), epochs, batch_size, lr, weight_decay, seed + 1,
                 after_epoch if has_val(bank) else (lambda epoch: None))
    if not has_val(bank):  # nothing to select on: the last epoch
        after_epoch(epochs)
    head_state, encoder_state = best.state
    head.load_state_dict(head_state)
    encoder.load_state_dict(encoder_state)
    with torch.no_grad():
        loc_feats = encoder(gallery_t)
    storage = gallery_xy.nbytes + nbytes(loc_feats, *head.parameters())
    notes = [f"database: {'+'.join(database)} ({len(gallery_xy)} gallery locations)"
             + (f"; epoch chosen on val against the {'+'.join(select_db)} database ({len(select_xy)} locations)"
                if select_db != database else ""),
             f"reverse geocoding: {geocoder.source}, agreeing with {geocoder_agreement(geocoder, bank):.1f}% of the "
             f"train labels; map not counted in storage: {geocoder.map_bytes} bytes"]
    if not has_val(bank):
        notes.append(NO_VAL_NOTE + " (last epoch)")
    chosen = {**best.summary(), "gallery": len(gallery_xy), "locations": min(locations or 10 * k, len(gallery_xy)),
              "database": "+".join(database)}
    if select_db != database:
        chosen["selection_database"] = "+".join(select_db)
    return finish("two-stage-geoclip", bank, ranker(loc_feats, head, gallery_xy, geocoder), k, chosen, storage,
                  "; ".join(notes))
