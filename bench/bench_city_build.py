"""Time to build a dataset from an OSM extract of a city, and how it scales with the extract's street length.

    .venv/bin/python bench/bench_city_build.py --extract hatfield.osm.pbf                 # one city, full city scale
    .venv/bin/python bench/bench_city_build.py --extract helsinki --boxes 0.3,0.6,0.9      # cuts of growing size
    .venv/bin/python bench/bench_city_build.py --extract hatfield.osm.pbf --city-scale tiny --json out.json

For each extract (or each square cut of `--boxes` km around the centre of its streets, made with
`addressclip.datasets.osm.cut_extract`), builds the rendered dataset exactly as `addressclip build NAME --osm FILE`
does, in a fresh process state (parse caches cleared), and reports the named street length, camera locations,
images, wall time (parse + partition + render + write) and seconds per km of street. Built folders are deleted.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from addressclip.datasets import build_dataset  # noqa: E402
from addressclip.datasets import osm as osm_module  # noqa: E402
from addressclip.datasets.registry import CITY_SCALES  # noqa: E402
from addressclip.datasets.synth import city_size  # noqa: E402


def one_build(extract: str, city_scale: str, workers: int | None, tmp: Path) -> dict:
    osm_module._load_cached.cache_clear()  # time the parse too, as a first build does
    t0 = time.perf_counter()
    city = osm_module.load_osm(extract)
    parse = time.perf_counter() - t0
    size = city_size(city)
    osm_module._load_cached.cache_clear()
    out = tmp / "built"
    t0 = time.perf_counter()
    build_dataset("bench-city", out_dir=out, overwrite=True, osm=extract, city_scale=city_scale, workers=workers,
                  progress=False)
    wall = time.perf_counter() - t0
    card = json.loads((out / "card.json").read_text())
    shutil.rmtree(out)
    images = sum(card["images"].values())
    return {
        "extract": Path(str(extract)).name, "city": card["city"], "city_scale": city_scale,
        "street_km": round(size["street_km"], 2), "scene_km2": round(size["scene_km2"], 3),
        "buildings": len(city.buildings), "locations": sum(card["locations"].values()), "images": images,
        "addresses": card["addresses"], "streets": card["streets"], "spacing_m": card["effective_spacing_m"],
        "parse_s": round(parse, 2), "build_s": round(wall, 1), "images_per_s": round(images / wall, 1),
        "s_per_street_km": round(wall / max(size["street_km"], 1e-9), 2),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extract", action="append", required=True, help="OSM extract path (or helsinki / kotka); repeatable")
    ap.add_argument("--boxes", default="", help="comma-separated square sizes in km to cut around each extract's centre")
    ap.add_argument("--city-scale", default="full", choices=CITY_SCALES)
    ap.add_argument("--workers", type=int, default=None, help="render processes (default: the city scale's)")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_city_") as tmp:
        tmp = Path(tmp)
        for extract in args.extract:
            sources = [extract]
            if args.boxes:
                c = city_size(osm_module.load_osm(extract))
                for km in (float(x) for x in args.boxes.split(",")):
                    dlat = km / 2 / 110.574
                    dlon = km / 2 / (111.320 * math.cos(math.radians(c["centre_lat"])))
                    name = f"{Path(str(extract)).name.split('.')[0]}-{km:g}km.osm.pbf"
                    sources.append(str(osm_module.cut_extract(extract, (c["centre_lon"] - dlon, c["centre_lat"] - dlat,
                                                                         c["centre_lon"] + dlon, c["centre_lat"] + dlat),
                                                              tmp / name)))
                sources = sources[1:] + sources[:1]  # the cuts, then the whole extract
            for source in sources:
                row = one_build(source, args.city_scale, args.workers, tmp)
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
