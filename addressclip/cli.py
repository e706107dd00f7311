"""`addressclip` command line: build datasets, train (also under torchrun), evaluate, predict.

    addressclip build helsinki-synth
    addressclip train --dataset helsinki-synth --epochs 10 --batch-size 64
    torchrun --nproc_per_node 2 -m addressclip.cli train --dataset helsinki-synth ...
    addressclip evaluate outputs/runs/<run> --dataset helsinki-synth --split test
    addressclip predict --checkpoint outputs/runs/<run> --addresses streets.txt -k 5 photos/ -o predictions.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from .config import TrainConfig


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


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
            parser.add_argument(flag, type=base if base in (int, float) else str, default=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="addressclip", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build a dataset into the data folder")
    b.add_argument("dataset")
    b.add_argument("--raw-dir", default=None, help="folder of the raw data (real datasets)")
    b.add_argument("--overwrite", action="store_true")
    b.add_argument("--strict", action="store_true", help="stop at the first bad input instead of skipping it")

    t = sub.add_parser("train", help="train a model (see TrainConfig for every option)")
    _add_config_flags(t)

    e = sub.add_parser("evaluate", help="evaluate a run folder or model.pt on a dataset split")
    e.add_argument("checkpoint")
    e.add_argument("--dataset", required=True)
    e.add_argument("--split", default="test")
    e.add_argument("-k", type=int, default=5)
    e.add_argument("--device", default="auto")

    _add_predict_parser(sub)

    args = vars(parser.parse_args(argv))
    command = args.pop("command")
    if command == "build":
        from .datasets import build_dataset

        kwargs = {"strict": args["strict"]} if args["strict"] else {}
        if args["raw_dir"]:
            kwargs["raw_dir"] = args["raw_dir"]
        print(build_dataset(args["dataset"], overwrite=args["overwrite"], **kwargs))
    elif command == "train":
        from .train import train

        print(train(TrainConfig.from_dict(args)))
    elif command == "evaluate":
        from .datasets import load_dataset
        from .evaluate import evaluate
        from .train import load_model, resolve_device

        model = load_model(args["checkpoint"], device=resolve_device(args["device"]))
        result = evaluate(model, load_dataset(args["dataset"]), args["split"], k=args["k"], progress=True)
        print(json.dumps(result.metrics, indent=2))
    elif command == "predict":
        return predict_command(args)
    return 0


def _add_predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="top-k addresses for images (any candidate list: open vocabulary)",
                       description="Rank candidate addresses for each image; print them and write a CSV or JSON. "
                                   "Unreadable files are reported and skipped.")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and/or folders (searched recursively)")
    p.add_argument("--checkpoint", required=True, help="run folder, model.pt, or run name under outputs/runs")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--addresses", metavar="FILE", help="candidate addresses, one per line")
    source.add_argument("--dataset", help="use this dataset's addresses (default: the dataset the run was trained on)")
    p.add_argument("-k", type=int, default=5, help="addresses per image (capped at the number of candidates)")
    p.add_argument("-o", "--output", default="predictions.csv", help="output file, .csv (one row per rank) or .json")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the candidate-embedding cache")
    p.add_argument("--quiet", action="store_true", help="do not print the predictions")


def predict_command(args: dict) -> int:
    """Run `addressclip predict`; user errors (missing checkpoint, unknown dataset, bad k) exit with status 2."""
    import warnings
    from pathlib import Path

    import pandas as pd

    from .predict import AddressLocator, UnreadableImageWarning, to_long, to_records

    out = Path(args["output"])
    try:
        if out.suffix.lower() not in (".csv", ".json"):
            raise ValueError(f"output must end in .csv or .json, got {out}")
        if args["k"] < 1:
            raise ValueError(f"-k must be at least 1, got {args['k']}")
        extra = {"cache_dir": False} if args["no_cache"] else {}
        locator = AddressLocator.from_checkpoint(args["checkpoint"], candidates=args["addresses"], dataset=args["dataset"],
                                                 device=args["device"], batch_size=args["batch_size"], progress=True, **extra)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnreadableImageWarning)  # reported below, once
            frame = locator.predict(args["images"], k=args["k"])
    except (FileNotFoundError, ValueError) as exc:
        print(f"addressclip predict: error: {exc}", file=sys.stderr)
        return 2
    skipped = frame.attrs["skipped"]
    if not args["quiet"]:
        for image, topk, scores in zip(frame["image"], frame["topk"], frame["scores"]):
            print(image)
            for r, (address, score) in enumerate(zip(topk, scores), 1):
                print(f"  {r}. {score:.4f}  {address}")
    for image, reason in skipped.items():
        print(f"skipped {image}: {reason}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".json":
        text = json.dumps(to_records(frame), indent=2, ensure_ascii=False) + "\n"
    else:
        long = to_long(frame).assign(error="")
        bad = pd.DataFrame({"image": list(skipped), "rank": pd.NA, "address": "", "score": pd.NA, "error": list(skipped.values())})
        text = pd.concat([long, bad], ignore_index=True).to_csv(index=False) if skipped else long.to_csv(index=False)
    from .runs import atomic_write_text

    atomic_write_text(out, text)
    info = locator.gallery_info
    print(f"{len(frame)} image(s) predicted, {len(skipped)} skipped; {info.count} candidate addresses "
          f"({'from cache' if info.from_cache else 'encoded'} in {info.seconds:.1f}s); wrote {out}", file=sys.stderr)
    return 0 if len(frame) else 1


if __name__ == "__main__":
    sys.exit(main())
