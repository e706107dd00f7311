"""`addressclip` command line: build datasets, train (also under torchrun), evaluate, predict.

    addressclip build helsinki-synth
    addressclip build bremen-synth --osm bremen-centre.osm.pbf --city-scale tiny       # your own city, rendered
    addressclip build my-photos --osm bremen-centre.osm.pbf --photos ~/Pictures/bremen  # your own geotagged photos
    addressclip train --dataset helsinki-synth --epochs 10 --batch-size 64
    torchrun --nproc_per_node 2 -m addressclip.cli train --dataset helsinki-synth ...
    addressclip evaluate outputs/runs/<run> --dataset helsinki-synth --split test
    addressclip predict --checkpoint outputs/runs/<run> --addresses streets.txt -k 5 photos/ -o predictions.json
    addressclip predict --checkpoint outputs/runs/<run> --osm bremen-centre.osm.pbf photos/ -o predictions.csv
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import traceback
import typing
import warnings

from .config import TrainConfig
from .datasets.registry import CITY_SCALES
from .errors import USER_ERRORS, UserError, debug_enabled, describe, one_line

SPLITS = ("train", "val", "test")


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, ``addressclip <command>: error: <message>``, exit status 2
    (argparse's own puts the whole usage block first; ``--help`` shows it)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _number(kind: type):
    """An argparse type that says what it wanted: "must be an integer, got 'ten'"."""
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {describe(kind)}, got {text!r}") from None
    parse.__name__ = kind.__name__
    return parse


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        args = typing.get_args(hint)
        base = next((a for a in args if a is not type(None)), hint)
        if base is bool:
            parser.add_argument(flag, type=_parse_bool, default=argparse.SUPPRESS, metavar="BOOL")
        elif typing.get_origin(base) is list:
            parser.add_argument(flag, nargs="*", default=argparse.SUPPRESS)
        else:
            parser.add_argument(flag, type=_number(base) if base in (int, float) else str, default=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="addressclip", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="A user error (a bad value, name or file) prints one line, `addressclip <command>: "
                                  "error: <message>`, and exits with status 2; --debug (or ADDRESSCLIP_DEBUG=1) adds "
                                  "the traceback.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", parents=[common], help="build a dataset into the data folder (a registry name, or your own city/photos)",
                       description="Build a registry dataset, or your own: a new NAME with --osm renders street views "
                                   "of that extract's city; with --photos too, it addresses your geotagged photos.")
    b.add_argument("dataset", help="registry name, or a new name for your own city or photos")
    b.add_argument("--raw-dir", default=None, help="folder of the raw data (real datasets)")
    b.add_argument("--overwrite", action="store_true")
    b.add_argument("--strict", action="store_true", help="stop at the first bad input instead of skipping it")
    b.add_argument("--osm", metavar="EXTRACT", help="your city: an OpenStreetMap extract (.osm.pbf, .osm, .osm.bz2)")
    b.add_argument("--photos", metavar="FOLDER", help="your geotagged photos (EXIF GPS), addressed from --osm")
    b.add_argument("--coordinates", metavar="CSV", help="photos without EXIF GPS: a CSV with columns file,lat,lon[,heading]")
    b.add_argument("--city-scale", choices=CITY_SCALES, default=None,
                   help="rendered city: tiny (a central area, 100 locations, 64 px) or full (the whole city, 128 px; default)")
    b.add_argument("--image-size", type=_number(int), default=None, help="rendered city: image size in pixels (default: the city scale's)")
    b.add_argument("--max-locations", type=_number(int), default=None, help="rendered city: at most this many camera locations")

    t = sub.add_parser("train", parents=[common], help="train a model (see TrainConfig for every option)",
                       description="Train a model. Every option of addressclip.config.TrainConfig is a flag; the "
                                   "configuration is checked before any data or model is loaded.")
    _add_config_flags(t)

    e = sub.add_parser("evaluate", parents=[common], help="evaluate a run folder or model.pt on a dataset split")
    e.add_argument("checkpoint", help="a run name under outputs/runs, a run folder or a model.pt")
    e.add_argument("--dataset", required=True)
    e.add_argument("--split", default="test", choices=SPLITS)
    e.add_argument("-k", type=_number(int), default=5)
    e.add_argument("--device", default="auto")

    _add_predict_parser(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status. A user error (`errors.USER_ERRORS`: a bad value, name or file)
    prints ``addressclip <command>: error: <message>`` on one line and returns 2; ``--debug`` or
    ``ADDRESSCLIP_DEBUG=1`` prints its traceback first. Warnings are printed one line each."""
    parser = build_parser()
    try:
        args = vars(parser.parse_args(argv))
    except SystemExit as exc:  # --help (0), or a usage error already printed on one line (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    command = args.pop("command")
    debug = bool(args.pop("debug", False)) or debug_enabled()
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _warning_printer(command)
        try:
            return COMMANDS[command](args)
        except USER_ERRORS as exc:
            if debug:
                traceback.print_exc()
            print(f"addressclip {command}: error: {one_line(exc)}", file=sys.stderr)
            return 2


def _warning_printer(command: str):
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"addressclip {command}: warning: {category.__name__}: {one_line(message)}", file=file or sys.stderr)
    return show


def train_command(args: dict) -> int:
    """Run `addressclip train`: the whole configuration is checked before any data or model is loaded."""
    cfg = TrainConfig.from_dict(args)
    from .train import train

    print(train(cfg))
    return 0


def evaluate_command(args: dict) -> int:
    """Run `addressclip evaluate`: arguments are checked before the dataset and the model are loaded."""
    if args["k"] < 1:
        raise UserError(f"-k must be at least 1, got {args['k']}")
    from .datasets import load_dataset
    from .evaluate import evaluate
    from .inference import load_model, resolve_device

    device = resolve_device(args["device"])
    ds = load_dataset(args["dataset"])
    model = load_model(args["checkpoint"], device=device)  # a run name, a run folder or a model.pt
    result = evaluate(model, ds, args["split"], k=args["k"], progress=True)
    print(json.dumps(result.metrics, indent=2))
    return 0


SHAPING = ("city_scale", "image_size", "max_locations")  # options that shape your own rendered city


def check_registry_build(dataset: str, shaping: list[str]) -> None:
    """Refuse `shaping` options (as the entry point spells them) for a registry dataset, which is built as
    registered: else `image_size` would silently build a non-standard one, or be ignored once it is built."""
    from .datasets import DATASETS

    if dataset in DATASETS and shaping:
        raise UserError(f"{', '.join(shaping)} shape your own city; registry dataset {dataset!r} is built as "
                        "registered (the -tiny names are the small versions)")


def build_command(args: dict) -> int:
    """Run `addressclip build`; user errors (bad name, unusable extract or photos) exit with status 2 (`main`)."""
    from .datasets import build_dataset

    kwargs = {"strict": True} if args["strict"] else {}
    if args["raw_dir"]:
        kwargs["raw_dir"] = args["raw_dir"]
    own = {"osm": args["osm"], "photos": args["photos"], "coordinates": args["coordinates"], "city_scale": args["city_scale"],
           "image_size": args["image_size"], "max_locations": args["max_locations"]}
    kwargs.update({k: v for k, v in own.items() if v is not None})
    check_registry_build(args["dataset"], [f"--{k.replace('_', '-')}" for k in SHAPING if k in kwargs])
    folder = build_dataset(args["dataset"], overwrite=args["overwrite"], **kwargs)  # builder errors are ValueErrors
    print(folder)
    card = json.loads((folder / "card.json").read_text())
    skipped = card.get("skipped") or {}
    print(f"{sum(card['images'].values())} images ({', '.join(f'{s} {n}' for s, n in card['images'].items())}), "
          f"{card['addresses']} addresses, {card['streets']} streets"
          + (f"; skipped {card.get('skipped_total', 0)}: " + ", ".join(f"{r} {v['count']}" for r, v in skipped.items())
             if skipped else ""), file=sys.stderr)
    return 0


def _add_predict_parser(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("predict", parents=[common], help="top-k addresses for images (any candidate list: open vocabulary)",
                       description="Rank candidate addresses for each image; print them and write a CSV or JSON. "
                                   "Unreadable files are reported and skipped.")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and/or folders (searched recursively)")
    p.add_argument("--checkpoint", required=True, help="run folder, model.pt, or run name under outputs/runs")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--addresses", metavar="FILE", help="candidate addresses, one per line")
    source.add_argument("--dataset", help="use this dataset's addresses (default: the dataset the run was trained on)")
    source.add_argument("--osm", metavar="EXTRACT", help="use every sub-street address of this OpenStreetMap extract "
                                                          "(.osm.pbf, .osm, .osm.bz2): a city from its map alone")
    p.add_argument("-k", type=_number(int), default=5, help="addresses per image (capped at the number of candidates)")
    p.add_argument("-o", "--output", default="predictions.csv", help="output file, .csv (one row per rank) or .json")
    p.add_argument("--batch-size", type=_number(int), default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the candidate-embedding cache")
    p.add_argument("--quiet", action="store_true", help="do not print the predictions")


def predict_command(args: dict) -> int:
    """Run `addressclip predict`; user errors (missing or unusable checkpoint, unknown dataset, bad k) exit with
    status 2 (`main`), before any image is read."""
    from pathlib import Path

    import pandas as pd

    from .predict import MIN_IMAGE_SIDE, AddressLocator, SmallImageWarning, UnreadableImageWarning, to_long, to_records

    out = Path(args["output"])
    if out.suffix.lower() not in (".csv", ".json"):
        raise UserError(f"output must end in .csv or .json, got {out}")
    if args["k"] < 1:
        raise UserError(f"-k must be at least 1, got {args['k']}")
    if args["batch_size"] < 1:
        raise UserError(f"--batch-size must be at least 1, got {args['batch_size']}")
    extra = {"cache_dir": False} if args["no_cache"] else {}
    locator = AddressLocator.from_checkpoint(args["checkpoint"], candidates=args["addresses"], dataset=args["dataset"],
                                             osm=args["osm"], device=args["device"], batch_size=args["batch_size"],
                                             progress=True, **extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreadableImageWarning)  # reported below, one line per image
        warnings.simplefilter("ignore", SmallImageWarning)
        frame = locator.predict(args["images"], k=args["k"])
    skipped = frame.attrs["skipped"]
    if not args["quiet"]:
        for image, topk, scores, lats, lons, dists in zip(frame["image"], frame["topk"], frame["scores"],
                                                          frame["topk_lat"], frame["topk_lon"], frame["topk_distance_m"]):
            print(image)
            for r, (address, score, lat, lon, dist) in enumerate(zip(topk, scores, lats, lons, dists), 1):
                where = f"  ({lat:.6f}, {lon:.6f})" if lat == lat else ""
                off = f"  {dist:.0f} m from the photo's GPS" if dist == dist else ""
                print(f"  {r}. {score:.4f}  {address}{where}{off}")
    for image, reason in skipped.items():
        print(f"skipped {image}: {one_line(reason)}", file=sys.stderr)
    for image, size in frame.attrs.get("small", {}).items():
        print(f"addressclip predict: warning: {image} is {size} px, smaller than {MIN_IMAGE_SIDE} px on a side: its "
              "prediction is unlikely to be meaningful", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".json":
        text = json.dumps(to_records(frame), indent=2, ensure_ascii=False) + "\n"
    else:
        long = to_long(frame).assign(error="")
        bad = pd.DataFrame({"image": list(skipped), "rank": pd.NA, "address": "", "score": pd.NA, "lat": pd.NA, "lon": pd.NA,
                            "distance_m": pd.NA, "photo_lat": pd.NA, "photo_lon": pd.NA, "error": list(skipped.values())})
        text = pd.concat([long, bad], ignore_index=True).to_csv(index=False) if skipped else long.to_csv(index=False)
    from .cache import write_text

    write_text(out, text)
    info = locator.gallery_info
    print(f"{len(frame)} image(s) predicted, {len(skipped)} skipped; {info.count} candidate addresses "
          f"({'from cache' if info.from_cache else 'encoded'} in {info.seconds:.1f}s); wrote {out}", file=sys.stderr)
    return 0 if len(frame) else 1


COMMANDS = {"build": build_command, "train": train_command, "evaluate": evaluate_command, "predict": predict_command}


if __name__ == "__main__":
    sys.exit(main())
