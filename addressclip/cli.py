"""`addressclip` command line: build datasets, train (also under torchrun), evaluate.

    addressclip build helsinki-synth
    addressclip train --dataset helsinki-synth --epochs 10 --batch-size 64
    torchrun --nproc_per_node 2 -m addressclip.cli train --dataset helsinki-synth ...
    addressclip evaluate outputs/runs/<run> --dataset helsinki-synth --split test
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
